"""Bad input is a ValueError or TypeError with the CLI's message, never a crash."""

from __future__ import annotations

import numpy as np
import pytest

import eqpm
from conftest import run_cli


@pytest.fixture(scope="module")
def pop():
    return eqpm.Population.generate(agents=30, pop_seed=2)


@pytest.mark.parametrize("keys, flags", [
    (dict(agnets=5), ["--agnets", "5"]),
    (dict(agents=-5), ["--agents", "-5"]),
    (dict(mix="foo=1"), ["--mix", "foo=1"]),
    (dict(lr="fast"), ["--lr", "fast"]),
    (dict(horizon=0), ["--horizon", "0"]),
    (dict(dc_lambda=(5, 1)), ["--dc-lambda", "5,1"]),
    (dict(activation="sigmoid"), ["--activation", "sigmoid"]),
])
def test_bad_keys_raise_the_programs_message(eqpm_bin, keys, flags):
    with pytest.raises(ValueError) as e:
        eqpm.Population.generate(**keys)
    cli = run_cli(eqpm_bin, "generate", *flags)
    assert cli.returncode != 0
    assert cli.stderr.strip() == f"eqpm: error: {e.value}"


def test_bad_key_types():
    with pytest.raises(TypeError):
        eqpm.Population.generate(agents=[[1, 2]])
    with pytest.raises(TypeError):
        eqpm.Population.generate(agents=None)
    with pytest.raises(TypeError):
        eqpm.Population.generate(agents=object())
    with pytest.raises(ValueError, match="unknown flag"):
        eqpm.train(epochs=1, not_a_key=3)


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="nope.csv"):
        eqpm.Population.from_csv(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("agent,family,weight\n0,robot,1\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        eqpm.Population.from_csv(bad)
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(ValueError):
        eqpm.Model.load(junk)
    with pytest.raises(ValueError):
        eqpm.train(series=str(tmp_path / "missing.csv"), epochs=1)


@pytest.mark.parametrize("pred, target, err", [
    (np.ones((4, 12)), np.ones((4, 11)), ValueError),          # shapes differ
    (np.ones(12), np.ones(12), ValueError),                    # not 2-D
    (np.ones((4, 65)), np.ones((4, 65)), ValueError),          # beyond the largest horizon
    (np.ones((0, 12)), np.ones((0, 12)), ValueError),          # no rows
    (np.full((4, 12), np.nan), np.ones((4, 12)), ValueError),  # NaN
    (np.ones((4, 12)), np.full((4, 12), np.inf), ValueError),  # infinite
    (np.ones((4, 12), dtype=complex), np.ones((4, 12)), TypeError),
    (np.array([["a"] * 12] * 4), np.ones((4, 12)), TypeError),
    (np.ones((4, 6)), np.ones((4, 6)), ValueError),            # agents act on hours >= 6
])
def test_bad_regret_arrays(pop, pred, target, err):
    with pytest.raises(err):
        eqpm.regrets(pop, pred, target)


def test_bad_regret_arguments(pop):
    y = np.ones((3, 12))
    with pytest.raises(TypeError):
        eqpm.regrets(pop, y, y, start_hour=1.5)
    with pytest.raises(TypeError):
        eqpm.regrets("pop", y, y)
    with pytest.raises(ValueError):
        eqpm.regrets(pop, y, y, demand_profile=[1.0, -1.0])
    with pytest.raises(ValueError):
        eqpm.regrets(pop, y, -y)
    with pytest.raises(TypeError):
        eqpm.Population(object())


def test_bad_model_inputs(tmp_path):
    run = eqpm.train(agents=20, epochs=1, series_hours=600, backend="cpu", quiet=True, beta="1")
    with pytest.raises(ValueError, match="shorter than the model's lookback"):
        run.model.predict(np.ones(10))
    with pytest.raises(ValueError):
        run.model.predict(np.full(50, np.nan))
    with pytest.raises(TypeError):
        run.model.predict(np.ones(50), hours=np.ones(50) * 0.5)
    with pytest.raises(ValueError):
        run.model.predict(np.ones(50), hours=np.full(50, 30))


def test_bad_sweeps():
    with pytest.raises(ValueError, match="give one of them"):
        eqpm.sweep(q=[0, 4], objective="cvar:0.1")
    with pytest.raises(ValueError):
        eqpm.sweep(q=[-1])
    with pytest.raises(ValueError):
        eqpm.sweep(objective="fairness:3")


def test_the_module_checks_shapes_itself(pop):
    """eqpm._core is not the public API, but a wrong call into it is an error, not a crash."""
    from eqpm import _core
    y = np.ones((4, 12), np.float32)
    with pytest.raises(ValueError):
        _core.regrets(pop._core, y, np.ones((3, 12), np.float32), np.arange(4), pop.demand_profile, 1e-3, 0)
    with pytest.raises(ValueError):
        _core.regrets(pop._core, y, y, np.arange(2), pop.demand_profile, 1e-3, 0)
    with pytest.raises(TypeError):
        _core.regrets(pop._core, "y", y, np.arange(4), pop.demand_profile, 1e-3, 0)
    est = _core.Estimator(pop._core, pop.demand_profile, "power:4", 0.05, 16, True, 1e-3, "auto", 0.99, 0, 0)
    with pytest.raises(ValueError):
        est.estimate(y, y, np.arange(4), 0, 0.0, np.ones(5), 0.0)
    with pytest.raises(ValueError):
        _core.Estimator(pop._core, pop.demand_profile, "power:4", 0.05, 15, True, 1e-3, "auto", 0.99, 0, 0)
