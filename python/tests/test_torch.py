"""eqpm.torch: EquitableLoss against the C++ estimator and finite differences, its state,
bad input, eqpm models as torch.nn.Sequential, and the LSTM example for a few steps.
Skipped when torch is not installed."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import eqpm  # noqa: E402
from eqpm import _core  # noqa: E402
from eqpm.torch import EquitableLoss, to_sequential  # noqa: E402
from conftest import REPO  # noqa: E402


@pytest.fixture(scope="module")
def pop():
    return eqpm.Population.generate(agents=80, pop_seed=3, ev_window_min=3)


def batch(B=6, H=12, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.uniform(0.5, 1.5, (B, H))
    return torch.tensor(y * rng.uniform(0.8, 1.2, (B, H)), dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def test_value_and_gradient_are_the_cpp_estimators(pop):
    loss_fn = EquitableLoss(pop, objective="power:4", seed=5)
    pred, target = batch()
    for step in range(3):
        rbar = loss_fn.rbar.numpy().copy() if step else np.zeros(0)
        ref = _core.gradient(pop._core, pop.demand_profile, "power:4", 0.05, 16, True, 1e-3, "auto", 0.99, 5,
                             0, pred.numpy(), target.numpy(), np.arange(17, 23), step, 0.0, rbar, 0.0)
        p = pred.clone().requires_grad_(True)
        value = loss_fn(p, target, start_hour=17)
        value.backward()
        assert value.item() == pytest.approx(ref["objective"], rel=1e-6)
        np.testing.assert_allclose(p.grad.numpy(), ref["grad"].astype(np.float32), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(loss_fn.rbar.numpy(), ref["rbar"])
        assert int(loss_fn.steps) == step + 1
        pred = pred * 0.98
    # No gradient, no state change.
    with torch.no_grad():
        loss_fn(pred, target, 17)
    assert int(loss_fn.steps) == 3


def test_gradient_matches_finite_differences_of_the_exact_objective():
    H, B, q = 6, 4, 4
    pop = eqpm.Population.generate(agents=40, mix="dc=0.5,inv=0.5", pop_seed=4, horizon=H,
                                   dc_hour=(0, H - 1), inv_hour=(0, H - 1))
    rng = np.random.default_rng(7)
    target = rng.uniform(0.5, 1.5, (B, H))
    mu = (target * rng.choice([0.8, 1.25], (B, H)) * rng.uniform(0.97, 1.03, (B, H))).astype(np.float32)
    loss_fn = EquitableLoss(pop, objective=f"power:{q}", sigma=1e-5, samples=2, estimator="pathwise", rho=0.0)
    p = torch.tensor(mu, dtype=torch.float64, requires_grad=True)
    loss_fn(p, torch.tensor(target), start_hour=100).backward()

    def objective(m):
        r = eqpm.regrets(pop, m, target.astype(np.float32), start_hour=100)
        return np.mean(r ** (q + 1)) ** (1 / (q + 1))

    fd = np.zeros((B, H))
    m0 = mu.astype(np.float64)
    for b in range(B):
        for h in range(H):
            e = np.zeros((B, H))
            e[b, h] = 1e-3 * m0[b, h]
            fd[b, h] = (objective(m0 + e) - objective(m0 - e)) / (2 * e[b, h])
    np.testing.assert_allclose(p.grad.numpy(), fd, rtol=2e-2, atol=2e-3 * np.abs(fd).max())


def test_loss_trains_a_forecast_towards_lower_regret(pop):
    """A free (B, H) forecast optimised with the loss lowers the worst agents' regret."""
    _, target = batch(B=8, seed=3)
    pred = torch.full_like(target, 0.7).requires_grad_(True)
    loss_fn = EquitableLoss(pop, objective="power:4", seed=1)
    opt = torch.optim.Adam([pred], lr=0.02)
    before = eqpm.regrets(pop, pred.detach().numpy(), target.numpy())
    for _ in range(150):
        opt.zero_grad()
        loss_fn(pred, target, 0).backward()
        opt.step()
    after = eqpm.regrets(pop, pred.detach().numpy(), target.numpy())
    assert after.max() < 0.5 * before.max()


def test_state_dict_round_trip(pop):
    a = EquitableLoss(pop, seed=2)
    pred, target = batch()
    a(pred.clone().requires_grad_(True), target, 0).backward()
    b = EquitableLoss(pop, seed=2)
    b.load_state_dict(a.state_dict())
    p1, p2 = pred.clone().requires_grad_(True), pred.clone().requires_grad_(True)
    a(p1, target, 0).backward()
    b(p2, target, 0).backward()
    assert torch.equal(p1.grad, p2.grad)


def test_bad_input(pop):
    loss_fn = EquitableLoss(pop)
    pred, target = batch()
    with pytest.raises(ValueError):
        loss_fn(pred, target[:, :5], 0)
    with pytest.raises(ValueError):
        loss_fn(pred[0], target[0], 0)
    with pytest.raises(TypeError):
        loss_fn(pred.to(torch.int32), target, 0)
    with pytest.raises(ValueError):
        loss_fn(pred * float("nan"), target, 0)
    with pytest.raises(TypeError):
        loss_fn(pred, target, 1.5)
    with pytest.raises(ValueError):
        loss_fn(pred, target, torch.arange(3))
    with pytest.raises(TypeError):
        loss_fn(pred.numpy(), target, 0)
    with pytest.raises(ValueError):
        loss_fn(pred[:, :6], target[:, :6], 0)  # agents act on hours beyond 6
    with pytest.raises(ValueError, match="objective"):
        EquitableLoss(pop, objective="fair:1")
    with pytest.raises(ValueError):
        EquitableLoss(pop, samples=3)
    with pytest.raises(ValueError):
        EquitableLoss(pop, estimator="magic")
    with pytest.raises(ValueError):
        EquitableLoss(pop, sigma=0)
    with pytest.raises(TypeError):
        EquitableLoss("pop")


def test_to_sequential_reproduces_the_models_forecasts():
    run = eqpm.train(agents=20, epochs=1, series_hours=800, backend="cpu", quiet=True, beta="1",
                     activation="gelu", hidden=(16, 8))
    seq = to_sequential(run.model)
    md = run.model.metadata
    offset, scale = float(md["eqpm.offset"]), float(md["eqpm.scale"])
    values = 300 + 40 * np.cos(np.arange(100) / 7.0)
    L = run.model.lookback
    rows = []
    for t in range(L, len(values) + 1):
        x = (values[t - L:t] - offset) / scale
        rows.append(np.concatenate([x, [np.sin(2 * np.pi * (t % 24) / 24), np.cos(2 * np.pi * (t % 24) / 24)]]))
    with torch.no_grad():
        mu = seq(torch.tensor(np.array(rows), dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(offset + scale * mu, run.model.predict(values), rtol=1e-5)


def test_lstm_example_runs(data_dir, tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "examples" / "torch_lstm.py"), "--steps", "6",
                          "--agents", "60", "--data", str(data_dir)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "worst agent" in out.stdout and "MSE LSTM" in out.stdout
