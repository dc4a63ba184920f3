"""eqpm's equitable loss under any PyTorch forecaster, and eqpm models as torch modules.

``EquitableLoss`` scores a batch of forecasts by the regrets of a population of agents and
back-propagates eqpm's estimator of the objective's gradient (DESIGN.md 5.2-5.3: the score
function with antithetic pairs, pathwise for differentiable families under
``estimator="auto"``), with the rho-smoothed agent weights kept in the module's buffers, so
that a checkpoint of the module resumes the smoothing too.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Union

import numpy as np
import torch

from . import _core
from ._api import Model, Population, _demand_profile

__all__ = ["EquitableLoss", "to_sequential"]

_ESTIMATORS = ("score", "pathwise", "auto")


class _Estimate(torch.autograd.Function):
    """A value computed outside autograd with its gradient with respect to `pred`."""

    @staticmethod
    def forward(ctx, pred, value, grad):  # type: ignore[override]
        ctx.save_for_backward(grad)
        return value

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad_output * grad, None, None


def _number(name: str, value: Any, lo: float, hi: float, *, open_lo=False, open_hi=False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    v = float(value)
    if not (v > lo if open_lo else v >= lo) or not (v < hi if open_hi else v <= hi):
        raise ValueError(f"--{name}: expected a number in {'(' if open_lo else '['}{lo:g}, "
                         f"{hi:g}{')' if open_hi else ']'}, got '{value}'")
    return v


def _host(name: str, t: torch.Tensor) -> torch.Tensor:
    """`t` as a float32, C-contiguous CPU tensor: itself (no copy) when it already is one."""
    return t.detach().to(device="cpu", dtype=torch.float32).contiguous()


class EquitableLoss(torch.nn.Module):
    """The equitable objective F (``"power:4"``, ``"tilt:2"``, ``"cvar:0.1"``, ... as eqpm's
    --objective) of the agents' regrets for forecasts `pred` (B, H), in the units the
    population's parameters expect (eqpm trains in units normalised by the training mean).

    forward(pred, target, start_hour) returns a scalar: with beta = 0 the minibatch's
    objective F(Rhat); with beta > 0 DESIGN.md 5.1's training loss
    (1 - beta) F(Rhat)/F(Rbar) + beta MSE/MSEbar. Its gradient with respect to `pred` is
    eqpm's estimator: agent weights omega_n = dF/dR_n at the smoothed regrets Rbar, the
    score function over `samples` perturbations pred + sigma eps (antithetic pairs) drawn
    from (seed, step, b, s) as a training step draws them, pathwise derivatives for the
    differentiable families with estimator="auto", and for EV agents the conditional gradient
    (``ev_gradient="conditional"``, as eqpm trains; ``"score"``: the score function). Row b of the batch is the forecast issued
    at series hour start_hour (an int: start_hour + b; or a (B,) integer tensor).

    Each forward with gradients enabled advances the smoothing state and the step counter
    (buffers rbar, msebar, steps); under torch.no_grad() the state is left alone. Tensors on
    the CPU reach the C++ estimator without a copy when they are float32 and contiguous; CUDA
    tensors are copied to the host and the gradient back to their device.
    """

    def __init__(
        self,
        pop: Population,
        objective: str = "power:4",
        sigma: float = 0.05,
        samples: int = 16,
        estimator: str = "auto",
        seed: int = 0,
        beta: float = 0.0,
        *,
        ev_gradient: str = "conditional",
        rho: float = 0.99,
        antithetic: bool = True,
        floor: float = 1e-3,
        demand_profile: Any = None,
        threads: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(pop, Population):
            raise TypeError(f"pop: expected an eqpm.Population, got {type(pop).__name__}")
        if not isinstance(objective, str):
            raise TypeError(f"objective: expected a string such as 'power:4', got {type(objective).__name__}")
        self.objective = _core.objective_spec(objective)
        self.sigma = _number("sigma", sigma, 0, 10, open_lo=True)
        if isinstance(samples, bool) or not isinstance(samples, numbers.Integral):
            raise TypeError(f"samples: expected an integer, got {type(samples).__name__}")
        if not 2 <= samples <= _core.max_samples or (antithetic and samples % 2):
            raise ValueError(f"--samples: expected an{' even' if antithetic else ''} integer in "
                             f"[2, {_core.max_samples}], got '{samples}'")
        if estimator not in _ESTIMATORS:
            raise ValueError(f"--estimator: expected score|pathwise|auto, got '{estimator}'")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise TypeError(f"seed: expected a non-negative integer, got {seed!r}")
        self.samples = int(samples)
        self.estimator = estimator
        self.seed = int(seed)
        self.beta = _number("beta", beta, 0, 1)
        self.rho = _number("rho", rho, 0, 1, open_hi=True)
        self.antithetic = bool(antithetic)
        self.floor = _number("floor", floor, 0, float("inf"))
        self.threads = int(threads)
        self.population = pop
        demand = _demand_profile(pop, demand_profile)
        self._estimator = _core.Estimator(
            pop._core, np.ascontiguousarray(demand, dtype=np.float32), self.objective, self.sigma,
            self.samples, self.antithetic, self.floor, self.estimator, self.rho, self.seed, self.threads,
            ev_gradient)
        self.ev_gradient = ev_gradient
        self.register_buffer("rbar", torch.zeros(len(pop), dtype=torch.float64))
        self.register_buffer("msebar", torch.zeros((), dtype=torch.float64))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.last: Optional[dict] = None  # the last estimate: objective, rhat, rbar, omega, ...

    def extra_repr(self) -> str:
        return (f"{len(self.population)} agents, objective={self.objective!r}, sigma={self.sigma:g}, "
                f"samples={self.samples}, estimator={self.estimator!r}, beta={self.beta:g}, rho={self.rho:g}")

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                start_hour: Union[int, torch.Tensor] = 0) -> torch.Tensor:
        if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
            raise TypeError("pred and target: expected torch tensors")
        if not pred.dtype.is_floating_point or not target.dtype.is_floating_point:
            raise TypeError(f"pred and target: expected float tensors, got {pred.dtype} and {target.dtype}")
        if pred.dim() != 2 or pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)}: expected "
                             "the same shape (B, H)")
        B, H = pred.shape
        if B < 1 or not 1 <= H <= _core.max_horizon:
            raise ValueError(f"pred: expected B >= 1 rows of 1..{_core.max_horizon} hours, got {tuple(pred.shape)}")
        mu, y = _host("pred", pred), _host("target", target)
        if not bool(torch.isfinite(mu).all()) or not bool(torch.isfinite(y).all()):
            raise ValueError("pred and target: hold NaN or infinite values")
        if isinstance(start_hour, torch.Tensor):
            if start_hour.dtype.is_floating_point or start_hour.dtype == torch.bool:
                raise TypeError(f"start_hour: expected integers, got {start_hour.dtype}")
            if start_hour.shape != (B,):
                raise ValueError(f"start_hour: expected shape ({B},), got {tuple(start_hour.shape)}")
            t = start_hour.detach().to(device="cpu", dtype=torch.int64).contiguous().numpy()
        elif isinstance(start_hour, numbers.Integral) and not isinstance(start_hour, bool):
            t = np.arange(int(start_hour), int(start_hour) + B, dtype=np.int64)
        else:
            raise TypeError(f"start_hour: expected an int or a (B,) integer tensor, got {type(start_hour).__name__}")
        steps = int(self.steps)
        est = self._estimator.estimate(
            mu, y, t, steps, self.beta,
            self.rbar.detach().cpu().numpy() if steps > 0 else np.zeros(0), float(self.msebar))
        if torch.is_grad_enabled() and pred.requires_grad:
            with torch.no_grad():
                self.rbar.copy_(torch.from_numpy(est["rbar"]))
                self.msebar.fill_(est["msebar"])
                self.steps += 1
        self.last = est
        value = torch.tensor(est["value"], dtype=pred.dtype, device=pred.device)
        grad = torch.from_numpy(est["grad"]).to(device=pred.device, dtype=pred.dtype)
        return _Estimate.apply(pred, value, grad)


_ACTIVATIONS = {
    "relu": lambda: torch.nn.ReLU(),
    "tanh": lambda: torch.nn.Tanh(),
    "gelu": lambda: torch.nn.GELU(approximate="tanh"),
}


def to_sequential(model: Model) -> torch.nn.Sequential:
    """An eqpm model as ``torch.nn.Sequential(Linear, act, ..., Linear, Softplus)`` with its
    weights: Linear i of the Sequential sits at index 2 i and takes net.{i}.weight and
    net.{i}.bias. Its input is x_t of DESIGN.md 2 (the L previous values normalised with the
    model's eqpm.offset and eqpm.scale, then sin and cos of the hour of day); its output is
    in normalised units (offset + scale * output in the series' units)."""
    if not isinstance(model, Model):
        raise TypeError(f"model: expected an eqpm.Model, got {type(model).__name__}")
    widths = model.widths
    layers: list = []
    for i in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        layers.append(_ACTIVATIONS[model.activation]() if i < len(widths) - 2 else torch.nn.Softplus())
    seq = torch.nn.Sequential(*layers)
    state = {f"{2 * int(k.split('.')[1])}.{k.split('.')[2]}": torch.from_numpy(v)
             for k, v in model.state_dict().items()}
    seq.load_state_dict(state)
    return seq
