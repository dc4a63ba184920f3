"""The estimator of DESIGN.md 5.2-5.3 for a caller's predictions (what EquitableLoss runs):
against the CPU backend's own training step on the same inputs and seed, against finite
differences of the exact objective, and the score function against the pathwise estimator
in expectation."""

from __future__ import annotations

import numpy as np
import pytest

import eqpm
from eqpm import _core


def gradient(pop, mu, target, t, step, *, objective="power:0", sigma=0.05, samples=16,
             antithetic=True, estimator="auto", rho=0.99, seed=42, rbar=None, beta=0.0, msebar=0.0):
    return _core.gradient(pop._core, pop.demand_profile, objective, sigma, samples, antithetic, 1e-3,
                          estimator, rho, seed, 0, np.ascontiguousarray(mu, np.float32),
                          np.ascontiguousarray(target, np.float32), np.asarray(t, np.int64), step, beta,
                          np.zeros(0) if rbar is None else np.asarray(rbar, np.float64), msebar)


@pytest.mark.parametrize("keys", [
    dict(q=4),
    dict(q=1, antithetic=False),           # the leave-one-out baseline
    dict(objective="cvar:0.2"),            # an objective evaluated on the host
    dict(q=2, estimator="score"),          # every family through the score function
])
def test_estimator_equals_the_backends_training_step(keys):
    cfg = dict(agents=150, mix="dc=0.3,ev=0.4,inv=0.3", series_hours=900, batch=8, samples=8,
               ev_window_min=3, **keys)
    ref = _core.backend_steps(eqpm._api._keys(cfg), 3)
    pop = eqpm.Population(ref["population"])
    objective = keys.get("objective", f"power:{keys.get('q', 0)}")
    for s in ref["steps"]:
        assert s["finite"]
        got = gradient(pop, s["mu"], s["target"], s["t"], s["step"], objective=objective, samples=8,
                       antithetic=keys.get("antithetic", True), estimator=keys.get("estimator", "auto"),
                       rbar=s["rbar_before"] if len(s["rbar_before"]) else None)
        np.testing.assert_allclose(got["rhat"], s["rhat"], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(got["omega"], s["omega"], rtol=1e-6, atol=1e-14)
        assert got["objective"] == pytest.approx(s["power_mean"], rel=1e-6)
        assert got["smoothed"] == pytest.approx(s["smoothed_power_mean"], rel=1e-6)
        # The backend's g is the regret term over Mbar (DESIGN.md 5.1, beta = 0).
        g = s["g"]
        np.testing.assert_allclose(got["grad"] / got["smoothed"], g, rtol=1e-5,
                                   atol=1e-6 * np.abs(g).max())
        assert np.abs(g).max() > 0


def _power_mean(r, q):
    return np.mean(r ** (q + 1)) ** (1 / (q + 1))


def test_pathwise_gradient_is_the_exact_objectives_derivative():
    H, B, q = 6, 4, 4
    pop = eqpm.Population.generate(agents=40, mix="dc=0.5,inv=0.5", pop_seed=4, horizon=H,
                                   dc_hour=(0, H - 1), inv_hour=(0, H - 1))
    rng = np.random.default_rng(7)
    target = rng.uniform(0.5, 1.5, (B, H))
    mu = target * rng.choice([0.8, 1.25], (B, H)) * rng.uniform(0.97, 1.03, (B, H))
    t = np.arange(B) + 100
    # rho = 0: the weights are those of this minibatch's regrets; sigma tiny: no smoothing.
    est = gradient(pop, mu, target, t, 0, objective=f"power:{q}", sigma=1e-5, samples=2,
                   estimator="pathwise", rho=0.0)
    mu32 = mu.astype(np.float32).astype(np.float64)

    def objective(m):
        return _power_mean(eqpm.regrets(pop, m, target.astype(np.float32), start_hour=100), q)

    assert est["objective"] == pytest.approx(objective(mu32), rel=1e-5)
    fd = np.zeros((B, H))
    for b in range(B):
        for h in range(H):
            step = 1e-3 * mu32[b, h]
            up, down = mu32.copy(), mu32.copy()
            up[b, h] += step
            down[b, h] -= step
            fd[b, h] = (objective(up) - objective(down)) / (2 * step)
    np.testing.assert_allclose(est["grad"], fd, rtol=2e-2, atol=2e-3 * np.abs(fd).max())
    assert np.abs(fd).max() > 0


def test_score_function_equals_pathwise_in_expectation():
    """On differentiable families both estimate the gradient of the same smoothed objective:
    their mean difference over many draws is within noise, and far below the gradient."""
    H, B = 4, 3
    pop = eqpm.Population.generate(agents=30, mix="dc=0.5,inv=0.5", pop_seed=9, horizon=H,
                                   dc_hour=(0, H - 1), inv_hour=(0, H - 1))
    rng = np.random.default_rng(2)
    target = rng.uniform(0.5, 1.5, (B, H))
    mu = target * rng.uniform(0.7, 1.4, (B, H))
    t = np.arange(B)
    diffs, paths = [], []
    for k in range(1000):
        kw = dict(objective="power:0", sigma=0.05, samples=16, rho=0.0)
        score = gradient(pop, mu, target, t, k, estimator="score", **kw)["grad"]
        path = gradient(pop, mu, target, t, k, estimator="pathwise", **kw)["grad"]
        diffs.append(score - path)
        paths.append(path)
    diffs, paths = np.array(diffs), np.array(paths)
    z = diffs.mean(0) / (diffs.std(0, ddof=1) / np.sqrt(len(diffs)))
    assert np.all(np.abs(z) < 4.5), z
    # The test has power: a score estimate off by 25% on any sizeable entry would fail it.
    mean_path = paths.mean(0)
    big = np.abs(mean_path) > 0.2 * np.abs(mean_path).max()
    stderr = diffs.std(0, ddof=1) / np.sqrt(len(diffs))
    assert np.all(4.5 * stderr[big] < 0.25 * np.abs(mean_path[big]))


def test_estimator_is_deterministic_and_depends_on_the_step():
    pop = eqpm.Population.generate(agents=50, pop_seed=1)
    rng = np.random.default_rng(0)
    target = rng.uniform(0.5, 1.5, (5, 12))
    mu = target * 1.1
    a = gradient(pop, mu, target, np.arange(5), 3, objective="power:4")
    b = gradient(pop, mu, target, np.arange(5), 3, objective="power:4")
    c = gradient(pop, mu, target, np.arange(5), 4, objective="power:4")
    np.testing.assert_array_equal(a["grad"], b["grad"])
    assert not np.array_equal(a["grad"], c["grad"])
