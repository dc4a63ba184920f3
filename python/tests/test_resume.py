"""Stopping and continuing runs from Python: a run or a sweep stopped by Ctrl-C (SIGINT, or
a progress callback that raises KeyboardInterrupt) and continued with resume=True ends
as one never stopped, file for file (wall times aside); resuming takes the stored
configuration and refuses what ``eqpm train --resume`` refuses, with its messages."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
from pathlib import Path

import numpy as np
import pytest

import eqpm
from conftest import compare_folders, run_cli

# 15 steps an epoch.
KEYS = dict(agents=60, epochs=3, warm_start_epochs=1, series_hours=1500, hidden=16,
            backend="cpu", threads=1, quiet=True)


def checkpoint_metadata(path: Path) -> dict:
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n])["__metadata__"]


class StopAt:
    """A progress callback that stops the run after step `step` of the run labelled
    `label`: by raising KeyboardInterrupt, or by sending the process SIGINT as Ctrl-C does."""

    def __init__(self, label: str, step: int, how: str = "raise") -> None:
        self.label, self.step, self.how = label, step, how

    def __call__(self, p: dict) -> None:
        if (p["run"], p["step"]) == (self.label, self.step):
            if self.how == "raise":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)


def assert_same_runs(a: eqpm.Run, b: eqpm.Run) -> None:
    np.testing.assert_array_equal(a.agents["regret"], b.agents["regret"])
    np.testing.assert_array_equal(a.agents["train_regret"], b.agents["train_regret"])
    for k, v in a.model.state_dict().items():
        np.testing.assert_array_equal(v, b.model.state_dict()[k])
    for k in ("epoch", "step", "loss", "power_mean", "mean", "max", "mse"):
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k])
    assert a.beta == b.beta


@pytest.mark.parametrize("extra, label, folder, how", [
    # one beta, stopped mid-epoch by a callback that raises
    (dict(beta=0.3), "[run]", "", "raise"),
    # beta auto (the default), stopped by SIGINT inside its second candidate
    ({}, "[run beta=0.5]", "beta=0.5", "sigint"),
])
def test_a_stopped_run_resumes_to_the_run_never_stopped(tmp_path, extra, label, folder, how):
    keys = {**KEYS, **extra}
    run = tmp_path / "run"
    whole = eqpm.train(out=run, **keys)
    run.rename(tmp_path / "whole")

    step = 7  # mid-epoch
    with pytest.raises(KeyboardInterrupt):
        eqpm.train(out=run, progress=StopAt(label, step, how), **keys)
    assert not (run / "summary.json").exists()
    assert checkpoint_metadata(run / folder / "checkpoint.safetensors")["eqpm.step"] == str(step)

    seen = []
    resumed = eqpm.train(out=run, resume=True, progress=seen.append)
    # It continued from the checkpoint (a finished candidate is only evaluated again) ...
    assert (seen[0]["run"], seen[0]["step"]) == (label, step + 1)
    # ... to the folder of the run never stopped: agents.csv and the models byte for byte,
    # the checkpoints' tensors byte for byte and their metadata but for wall times.
    assert compare_folders(tmp_path / "whole", run) >= 7
    assert (run / "agents.csv").read_bytes() == (tmp_path / "whole" / "agents.csv").read_bytes()
    assert_same_runs(resumed, whole)


def test_resume_takes_the_stored_configuration_and_refuses_changes(tmp_path, eqpm_bin):
    keys = {**KEYS, "epochs": 2, "beta": 0.3}
    run = tmp_path / "run"
    eqpm.train(out=run, **keys)
    shutil.copytree(run, tmp_path / "copy")

    def refused(py_call, *cli_args):
        """The ValueError of `py_call`, which must be the program's message for cli_args."""
        with pytest.raises(ValueError) as e:
            py_call()
        cli = run_cli(eqpm_bin, "train", *cli_args)
        assert cli.returncode == 1
        assert cli.stderr.strip() == f"eqpm: error: {e.value}"
        return str(e.value)

    assert "cannot change when resuming (the run was started with 0.001)" in refused(
        lambda: eqpm.train(out=run, resume=True, lr=0.5), "--resume", str(run), "--lr", "0.5")
    refused(lambda: eqpm.train(out=run, resume=True, agents=10), "--resume", str(run), "--agents", "10")
    assert "give more --epochs" in refused(
        lambda: eqpm.train(out=run, resume=True, epochs=1), "--resume", str(run), "--epochs", "1")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no checkpoint.safetensors in that folder" in refused(
        lambda: eqpm.train(out=empty, resume=True), "--resume", str(empty))
    with pytest.raises(ValueError, match="^--out: an output folder is required"):
        eqpm.train(resume=True, **keys)
    with pytest.raises(TypeError, match="resume: expected"):
        eqpm.train(out=run, resume=1)
    compare_folders(tmp_path / "copy", run)  # nothing refused was written

    # The keys it was started with may be given again; a finished run only re-evaluates.
    eqpm.train(out=run, resume=True, **keys)
    compare_folders(tmp_path / "copy", run)
    # resume=DIR with out finishes elsewhere (--resume DIR --out); epochs extends the run.
    eqpm.train(out=tmp_path / "elsewhere", resume=run)
    assert (tmp_path / "elsewhere" / "agents.csv").read_bytes() == (run / "agents.csv").read_bytes()
    longer = eqpm.train(out=run, resume=True, epochs=3)
    per_epoch = json.loads((tmp_path / "copy" / "summary.json").read_text())["train"]["steps"] // 2
    assert longer.summary["train"]["steps"] == 3 * per_epoch

    # A --beta auto run keeps its candidates in its own folder.
    auto = tmp_path / "auto"
    eqpm.train(out=auto, **{**KEYS, "epochs": 1, "warm_start_epochs": 0})
    refused(lambda: eqpm.train(out=tmp_path / "x", resume=auto), "--resume", str(auto), "--out",
            str(tmp_path / "x"))


@pytest.mark.parametrize("extra, label", [
    (dict(beta=0.3), "[q=0]"),  # one beta: stopped in the run after plain
    ({}, "[q=4 beta=0.1]"),  # beta auto: in the last run's first candidate
])
def test_a_stopped_sweep_resumes_to_the_sweep_never_stopped(tmp_path, extra, label):
    keys = {**KEYS, **extra}
    sw = tmp_path / "sw"
    whole = eqpm.sweep(q=[0, 4], out=sw, **keys)
    sw.rename(tmp_path / "whole")

    step = 20  # in the second epoch
    with pytest.raises(KeyboardInterrupt):
        eqpm.sweep(q=[0, 4], out=sw, progress=StopAt(label, step), **keys)
    assert not (sw / "sweep.csv").exists()

    seen = []
    resumed = eqpm.sweep(q=[0, 4], out=sw, resume=True, progress=seen.append)
    assert (seen[0]["run"], seen[0]["step"]) == (label, step + 1)
    compare_folders(tmp_path / "whole", sw)
    assert list(resumed) == list(whole) == ["plain", "q=0", "q=4"]
    for name in whole:
        assert_same_runs(resumed[name], whole[name])


def test_sweep_resume_refuses_another_list_or_configuration(tmp_path):
    keys = {**KEYS, "epochs": 1, "warm_start_epochs": 0, "beta": 0.3}
    sw = tmp_path / "sw"
    with pytest.raises(KeyboardInterrupt):
        eqpm.sweep(q=[0, 4], out=sw, progress=StopAt("[q=4]", 3), **keys)
    assert (sw / "q=4" / "checkpoint.safetensors").exists()

    def refused(match, **kw):
        with pytest.raises(ValueError, match=match):
            eqpm.sweep(**{"q": [0, 4], "out": sw, "resume": True, **kw})

    refused("began the run q=4 but not q=1, which comes before it", q=[0, 1, 4])
    refused("began the run q=4, which this list lacks", q=[0])
    refused(r"^--beta 0.5: cannot change when resuming \(the run was started with 0.3\)", beta=0.5)
    refused(r"^--lr 0.5: cannot change when resuming \(the run was started with 0.001\)", lr=0.5)
    refused("no plain/checkpoint.safetensors in that folder", out=tmp_path / "none")
    refused("^--out: an output folder is required", out=None)
    with pytest.raises(TypeError, match="resume: expected True or False"):
        eqpm.sweep(q=[0, 4], out=sw, resume=str(sw))

    # The keys it was started with may be given again (without them, the stored ones are
    # taken, beta from its begun q runs); a longer list continues into its new runs.
    runs = eqpm.sweep(q=[0, 4, 19], out=sw, resume=True, **keys)
    assert list(runs) == ["plain", "q=0", "q=4", "q=19"]
    assert runs["q=19"].beta == 0.3
    assert (sw / "sweep.csv").read_text().count("\n") == 5
