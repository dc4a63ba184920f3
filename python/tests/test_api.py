"""The package's API against the eqpm program and against references: populations,
regrets for every family, models, and train/sweep output folders bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import eqpm
from conftest import compare_folders, reference_regrets, run_cli

SMALL = dict(agents=60, epochs=2, series_hours=1500, backend="cpu", quiet=True)


def test_version_is_the_programs(eqpm_bin):
    out = run_cli(eqpm_bin, "--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"eqpm {eqpm.__version__}"
    info = run_cli(eqpm_bin, "info").stdout
    assert info.startswith(f"eqpm {eqpm.__version__} (")


def test_generate_gives_the_programs_agents(eqpm_bin, tmp_path):
    keys = dict(agents=300, mix="inv=0.5,ev=0.3,dc=0.2", pop_seed=3, horizon=8, ev_window_min=3,
                dc_hour=(0, 7))
    pop = eqpm.Population.generate(**keys)
    assert len(pop) == 300
    args = ["generate", "--out", str(tmp_path / "cli.csv"), "--agents", "300",
            "--mix", "inv=0.5,ev=0.3,dc=0.2", "--pop-seed", "3", "--horizon", "8",
            "--ev-window-min", "3", "--dc-hour", "0,7"]
    assert run_cli(eqpm_bin, *args).returncode == 0
    pop.to_csv(tmp_path / "py.csv")
    assert (tmp_path / "py.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()


def test_population_round_trip_and_table(tmp_path):
    pop = eqpm.Population.generate(agents=90, pop_seed=5, ev_window_min=2)
    pop.to_csv(tmp_path / "p.csv")
    back = eqpm.Population.from_csv(tmp_path / "p.csv")
    back.to_csv(tmp_path / "q.csv")
    assert (tmp_path / "p.csv").read_bytes() == (tmp_path / "q.csv").read_bytes()
    t = back.table()
    header = (tmp_path / "p.csv").read_text().splitlines()[0].split(",")
    assert list(t) == header
    assert all(len(c) == 90 for c in t.values())
    assert set(t["family"]) == {"datacenter", "ev_charging", "inventory"}
    dc = t["family"] == "datacenter"
    assert np.all(t["lambda"][dc] > 0) and np.all(np.isnan(t["lambda"][~dc]))
    ev = t["family"] == "ev_charging"
    assert np.all(t["window_end"][ev] - t["window_start"][ev] >= t["k"][ev])
    assert {k: pop.count(k) for k in ("datacenter", "ev_charging", "inventory")} == {
        f: int(np.sum(t["family"] == f)) for f in ("datacenter", "ev_charging", "inventory")}


@pytest.mark.parametrize("mix", ["dc=1", "ev=1", "inv=1", "dc=0.3,ev=0.4,inv=0.3"])
def test_regrets_match_a_numpy_reference(mix):
    H = 10
    pop = eqpm.Population.generate(agents=120, mix=mix, pop_seed=11, horizon=H, ev_window_min=3,
                                   dc_hour=(0, H - 1), dc_phase=(0, 40))
    rng = np.random.default_rng(1)
    T = 37
    target = rng.uniform(50, 400, (T, H)).astype(np.float32)
    pred = (target * rng.uniform(0.6, 1.4, (T, H))).astype(np.float32)
    got = eqpm.regrets(pop, pred, target, start_hour=29)
    assert got.dtype == np.float64 and got.shape == (120,)
    ref = reference_regrets(pop.table(), pred, target, np.arange(29, 29 + T), pop.demand_profile)
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-4)
    assert np.all(got >= 0) and np.any(got > 0)
    # A perfect forecast costs nobody anything.
    assert np.all(eqpm.regrets(pop, target, target) == 0)


def test_regrets_use_the_start_hour_and_the_demand_profile():
    pop = eqpm.Population.generate(agents=40, mix="dc=1", pop_seed=2)
    rng = np.random.default_rng(3)
    target = rng.uniform(100, 200, (5, 12))
    pred = target * 1.3
    base = eqpm.regrets(pop, pred, target, start_hour=0)
    assert not np.allclose(base, eqpm.regrets(pop, pred, target, start_hour=7))
    # Every datacenter regret scales with sqrt(demand).
    d = pop.demand_profile
    np.testing.assert_allclose(eqpm.regrets(pop, pred, target, 0, demand_profile=4 * d), 2 * base,
                               rtol=1e-6)


def test_model_predict_state_dict_and_run(tmp_path, eqpm_bin):
    run = eqpm.train(out=tmp_path / "run", **SMALL)
    model = eqpm.Model.load(tmp_path / "run" / "model.safetensors")
    assert model.widths == run.model.widths == [26, 64, 64, 12]
    sd = model.state_dict()
    assert [k for k in sd] == [f"net.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    assert sd["net.0.weight"].shape == (64, 26) and sd["net.2.bias"].shape == (12,)
    for k, v in run.model.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    # predict equals eqpm predict's CSV, row for row.
    values = 200 + 50 * np.sin(np.arange(300) / 5.0)
    series = tmp_path / "s.csv"
    start = np.datetime64("2022-01-01T00:00")
    series.write_text("timestamp,value\n" + "".join(
        f"{start + np.timedelta64(i, 'h')}:00+00:00,{float(v)!r}\n" for i, v in enumerate(values)))
    cli = run_cli(eqpm_bin, "predict", "--model", str(tmp_path / "run" / "model.safetensors"),
                  "--series", str(series), "--column", "value")
    assert cli.returncode == 0, cli.stderr
    rows = [line.split(",")[1:] for line in cli.stdout.splitlines()[1:]]
    got = model.predict(values)
    assert got.shape == (300 - 24 + 1, 12)
    np.testing.assert_array_equal(got, np.array(rows, dtype=np.float64).astype(np.float32))
    # The run's own columns.
    assert run.summary["test"]["agents"] == 60
    assert run.summary["train"]["steps"] == int(run.metrics["step"][-1])
    assert len(run.metrics["epoch"]) == 2
    assert set(run.agents) >= {"agent", "family", "regret", "train_regret"}
    assert run.summary["test"]["mean"] == pytest.approx(np.mean(run.agents["regret"]), rel=1e-12)


@pytest.mark.parametrize("extra", [
    {},  # beta auto (the default): three candidates and the chosen one
    {"beta": "0.3", "q": "4", "mix": "inv=0.6,ev=0.4", "estimator": "score", "antithetic": False},
])
def test_train_out_is_the_programs_folder(eqpm_bin, tmp_path, monkeypatch, extra):
    keys = {**SMALL, **extra}
    args = ["train", "--out", "run"]
    for k, v in keys.items():
        args += [f"--{k.replace('_', '-')}", "true" if v is True else "false" if v is False else str(v)]
    (tmp_path / "cli").mkdir()
    (tmp_path / "py").mkdir()
    out = run_cli(eqpm_bin, *args, cwd=tmp_path / "cli")
    assert out.returncode == 0, out.stderr
    monkeypatch.chdir(tmp_path / "py")
    eqpm.train(out="run", **keys)
    n = compare_folders(tmp_path / "cli" / "run", tmp_path / "py" / "run")
    assert n >= 7


# Four epochs, the last two annealed: the models train side by side to epoch 2 and may
# anneal from another's state (anneal_start.csv).
SWEEP = dict(SMALL, beta="0.3", agents=40, epochs=4, warm_start_epochs=1, lr_anneal_epochs=2)


def test_sweep_out_is_the_programs_folder(eqpm_bin, tmp_path, monkeypatch):
    (tmp_path / "cli").mkdir()
    (tmp_path / "py").mkdir()
    out = run_cli(eqpm_bin, "sweep", "--q", "0,4", "--out", "sw", "--agents", "40", "--epochs", "4",
                  "--warm-start-epochs", "1", "--lr-anneal-epochs", "2", "--series-hours", "1500",
                  "--backend", "cpu", "--quiet", "--beta", "0.3", cwd=tmp_path / "cli")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "cli" / "sw" / "anneal_start.csv").read_text().startswith("run,beta,start_from")
    monkeypatch.chdir(tmp_path / "py")
    runs = eqpm.sweep(q=[0, 4], out="sw", **SWEEP)
    assert list(runs) == ["plain", "q=0", "q=4"]
    assert runs["plain"].beta == 1 and runs["q=4"].beta == 0.3
    assert runs["q=4"].summary["config"]["q"] == 4
    compare_folders(tmp_path / "cli" / "sw", tmp_path / "py" / "sw")


def test_sweep_in_memory_matches_a_written_sweep(tmp_path):
    # Without a folder the states at the annealing exchange stay in memory: the same models.
    memory = eqpm.sweep(q=[0, 4], **SWEEP)
    written = eqpm.sweep(q=[0, 4], out=tmp_path / "sw", **SWEEP)
    for name in ("plain", "q=0", "q=4"):
        np.testing.assert_array_equal(memory[name].agents["regret"], written[name].agents["regret"])
        for k, v in memory[name].model.state_dict().items():
            np.testing.assert_array_equal(v, written[name].model.state_dict()[k])


def test_train_in_memory_reports_progress_and_matches_a_written_run(tmp_path):
    seen = []
    run = eqpm.train(progress=seen.append, **SMALL, beta="0.5")
    assert seen and seen[-1]["step"] == seen[-1]["total_steps"] == run.summary["train"]["steps"]
    assert [p["step"] for p in seen] == list(range(1, len(seen) + 1))
    written = eqpm.train(out=tmp_path / "r", **SMALL, beta="0.5")
    np.testing.assert_array_equal(run.agents["regret"], written.agents["regret"])
    for k, v in run.model.state_dict().items():
        np.testing.assert_array_equal(v, written.model.state_dict()[k])


def test_a_failing_progress_callback_stops_the_run():
    calls = []

    def stop(p):
        calls.append(p["step"])
        if p["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        eqpm.train(progress=stop, **SMALL, beta="0.5")
    assert calls == [1, 2, 3]
