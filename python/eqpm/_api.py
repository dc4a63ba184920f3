"""The package's API over the module eqpm._core: keyword arguments become configuration
text (what the command line would have been given), arrays are checked before they reach
C++, and results come back as numpy columns."""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from . import _core

PathLike = Union[str, "os.PathLike[str]"]
ProgressCallback = Callable[[dict], None]


# ------------------------------------------------------------------ configuration text
def _text(key: str, value: Any) -> str:
    """A keyword's value as the command line would spell it."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
        if any(isinstance(v, (list, tuple, dict, np.ndarray)) for v in items):
            raise TypeError(f"{key}: expected a flat list of numbers, got {value!r}")
        return ",".join(_text(key, v) for v in items)
    raise TypeError(
        f"{key}: expected a number, string, bool, path or list, got {type(value).__name__}"
    )


def _keys(keys: Mapping[str, Any]) -> list:
    out = []
    for key, value in keys.items():
        if value is None:
            raise TypeError(f"{key}: None is not a value (leave the key out for its default)")
        out.append((key, _text(key, value)))
    return out


def _progress(progress: Union[None, bool, ProgressCallback]) -> Optional[ProgressCallback]:
    """None: the C++ progress line on stderr (as the CLI; quiet=True silences it);
    True: a tqdm bar per run; a callable: called with a dict after every step."""
    if progress is None or progress is False:
        return None
    if callable(progress):
        return progress
    if progress is True:
        try:
            from tqdm.auto import tqdm
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("progress=True needs tqdm (pip install tqdm)") from e
        bars: dict = {}

        def update(p: dict) -> None:
            bar = bars.get(p["run"])
            if bar is None:
                bar = bars[p["run"]] = tqdm(total=p["total_steps"], desc=p["run"])
            bar.set_postfix(loss=f"{p['loss']:.4g}", mean_regret=f"{p['mean_regret']:.4g}")
            bar.update(p["step"] - bar.n)
            if p["step"] == p["total_steps"]:
                bar.close()

        return update
    raise TypeError(f"progress: expected None, True or a callable, got {type(progress).__name__}")


# ------------------------------------------------------------------ arrays
def _float_array(name: str, a: Any, ndim: int) -> np.ndarray:
    arr = np.asarray(a)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name}: expected a float array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: holds NaN or infinite values")
    return arr


# ------------------------------------------------------------------ populations
class Population:
    """N agents of the families of DESIGN.md 4 with the demand profile their datacenter
    agents see (the synthetic one unless the configuration names a trace)."""

    def __init__(self, core: "_core.Population") -> None:
        if not isinstance(core, _core.Population):
            raise TypeError("use Population.generate(...) or Population.from_csv(...)")
        self._core = core

    @classmethod
    def generate(cls, **keys: Any) -> "Population":
        """The population ``eqpm generate`` writes with the same keys (agents, mix, pop_seed,
        horizon, dc_lambda, ..., or population=CSV, ev_sessions=CSV)."""
        return cls(_core.Population.generate(_keys(keys)))

    @classmethod
    def from_csv(cls, path: PathLike, horizon: int = 12) -> "Population":
        """Reads a population.csv (DESIGN.md 8.1), checking every agent against `horizon`;
        its datacenter agents see the synthetic demand profile (see with_demand_profile)."""
        if not isinstance(horizon, numbers.Integral) or isinstance(horizon, bool):
            raise TypeError(f"horizon: expected an integer, got {type(horizon).__name__}")
        return cls(_core.Population.from_csv(os.fspath(path), int(horizon)))

    def to_csv(self, path: PathLike) -> None:
        """Writes population.csv (replaced atomically)."""
        self._core.to_csv(os.fspath(path))

    def __len__(self) -> int:
        return len(self._core)

    def table(self) -> dict:
        """The columns of population.csv as numpy arrays; cells that do not apply to an
        agent's family are NaN, `family` (and `group`, when present) are strings."""
        t = self._core.table()
        t["family"] = np.array(t["family"], dtype=str)
        if "group" in t:
            t["group"] = np.array(t["group"], dtype=str)
        return t

    @property
    def demand_profile(self) -> np.ndarray:
        """The demand profile D of DESIGN.md 4.1 (float32)."""
        return self._core.demand()

    def with_demand_profile(self, demand: Any) -> "Population":
        """The same agents with another demand profile (positive values)."""
        d = _float_array("demand_profile", demand, 1)
        if d.size == 0 or np.any(d <= 0):
            raise ValueError("demand_profile: expected positive values")
        return Population(self._core.with_demand(np.ascontiguousarray(d, dtype=np.float32)))

    def count(self, family: str) -> int:
        return self._core.count(family)

    def __repr__(self) -> str:
        parts = [f"{f}={self.count(f)}" for f in ("datacenter", "ev_charging", "inventory")]
        return f"Population({len(self)} agents: {', '.join(parts)})"


# ------------------------------------------------------------------ regrets

def _demand_profile(pop, demand_profile):
    """The datacenter demand profile: `pop`'s own, or the given positive values."""
    if demand_profile is None:
        return pop.demand_profile
    d = _float_array("demand_profile", demand_profile, 1)
    if d.size == 0 or np.any(d <= 0):
        raise ValueError("demand_profile: expected positive values")
    return d

def regrets(
    pop: Population,
    pred: Any,
    target: Any,
    start_hour: int = 0,
    demand_profile: Any = None,
    *,
    floor: float = 1e-3,
    threads: int = 0,
) -> np.ndarray:
    """Each agent's regret averaged over the T rows of `pred` and `target` (T, H), in the
    caller's units (no scaling). Row i is the forecast issued at series hour
    start_hour + i, which datacenter agents use for their demand (DESIGN.md 4.1).
    Runs on the CPU backend's sample-lane path, with threads. Returns float64 (N,)."""
    if not isinstance(pop, Population):
        raise TypeError(f"pop: expected an eqpm.Population, got {type(pop).__name__}")
    p = _float_array("pred", pred, 2)
    y = _float_array("target", target, 2)
    if p.shape != y.shape:
        raise ValueError(f"pred {p.shape} and target {y.shape}: expected the same shape")
    if p.shape[0] < 1 or not 1 <= p.shape[1] <= _core.max_horizon:
        raise ValueError(
            f"pred: expected T >= 1 rows of 1..{_core.max_horizon} hours, got shape {p.shape}"
        )
    if pop.count("datacenter") and np.any(y < 0):
        raise ValueError("target: datacenter regrets need non-negative truths")
    if not isinstance(start_hour, numbers.Integral) or isinstance(start_hour, bool):
        raise TypeError(f"start_hour: expected an integer, got {type(start_hour).__name__}")
    t = np.arange(int(start_hour), int(start_hour) + p.shape[0], dtype=np.int64)
    d = _demand_profile(pop, demand_profile)
    return _core.regrets(
        pop._core,
        np.ascontiguousarray(p, dtype=np.float32),
        np.ascontiguousarray(y, dtype=np.float32),
        t,
        np.ascontiguousarray(d, dtype=np.float32),
        float(floor),
        int(threads),
    )


# ------------------------------------------------------------------ models
class Model:
    """A trained forecaster (model.safetensors): an MLP from the L previous values and the
    hour of day to the next H values, with the normalisation it was trained with."""

    def __init__(self, core: "_core.Model") -> None:
        if not isinstance(core, _core.Model):
            raise TypeError("use Model.load(path) or the model of a Run")
        self._core = core

    @classmethod
    def load(cls, path: PathLike) -> "Model":
        return cls(_core.Model.load(os.fspath(path)))

    def save(self, path: PathLike) -> None:
        self._core.save(os.fspath(path))

    @property
    def lookback(self) -> int:
        return self._core.widths[0] - 2

    @property
    def horizon(self) -> int:
        return self._core.widths[-1]

    @property
    def widths(self) -> list:
        """Layer widths, input first: [L + 2, hidden..., H]."""
        return list(self._core.widths)

    @property
    def activation(self) -> str:
        return self._core.activation

    @property
    def metadata(self) -> dict:
        return dict(self._core.metadata)

    def predict(self, series_values: Any, hours: Any = None) -> np.ndarray:
        """Forecasts in the series' units, as ``eqpm predict``: row i (i = 0 .. T - L) is
        the forecast issued at hour L + i from the L values before it, for hours
        L + i .. L + i + H - 1 (the last row forecasts past the series' end). `hours` are
        the hours of day of the values (default: index mod 24, as synthetic series)."""
        v = np.ascontiguousarray(_float_array("series_values", series_values, 1), dtype=np.float64)
        h = None
        if hours is not None:
            h = np.asarray(hours)
            if not np.issubdtype(h.dtype, np.integer):
                raise TypeError(f"hours: expected integers, got dtype {h.dtype}")
            h = np.ascontiguousarray(h, dtype=np.int32)
        return self._core.predict(v, h)

    def state_dict(self) -> dict:
        """The weights as numpy arrays: net.{i}.weight (out, in) and net.{i}.bias (out,),
        float32, PyTorch's nn.Linear layout (see eqpm.torch.to_sequential)."""
        return self._core.state_dict()

    def __repr__(self) -> str:
        return f"Model(widths={self.widths}, activation={self.activation!r})"


# ------------------------------------------------------------------ runs
@dataclass
class Run:
    """One trained model and its evaluation (the contents of a train output folder)."""

    summary: dict
    agents: dict
    metrics: dict
    model: Model
    population: Population
    backend: str
    beta: float = field(default=1.0)

    @classmethod
    def _from_core(cls, d: dict) -> "Run":
        agents = dict(d["agents"])
        agents["family"] = np.array(agents["family"], dtype=str)
        return cls(
            summary=json.loads(d["summary_json"]),
            agents=agents,
            metrics=dict(d["metrics"]),
            model=Model(d["model"]),
            population=Population(d["population"]),
            backend=d["backend"],
            beta=d["beta"],
        )

    def __repr__(self) -> str:
        t = self.summary.get("test", {})
        return (
            f"Run({len(self.population)} agents, beta {self.beta:g}, test mean regret "
            f"{t.get('mean', float('nan')):.4g}, max {t.get('max', float('nan')):.4g})"
        )


def _resume_folder(resume: Any, out: Optional[PathLike], what: str) -> str:
    """The folder `resume` names: with True, `out` (the run to continue); "" for a new run."""
    if isinstance(resume, (bool, np.bool_)):
        if not resume:
            return ""
        if out is None:
            raise ValueError(
                f"--out: an output folder is required (resume=True continues the {what} in out)"
            )
        return os.fspath(out)
    if what == "run" and isinstance(resume, (str, os.PathLike)):
        return os.fspath(resume)
    expected = "True or False" if what == "sweep" else "True, False or a run's folder"
    raise TypeError(f"resume: expected {expected}, got {type(resume).__name__}")


def train(
    out: Optional[PathLike] = None,
    *,
    resume: Union[bool, PathLike] = False,
    progress: Union[None, bool, ProgressCallback] = None,
    **keys: Any,
) -> Run:
    """Trains one model in-process (the GIL released), as ``eqpm train`` with the same keys.
    With `out`, writes exactly the folder ``eqpm train --out`` writes. Ctrl-C stops the run
    after the step in progress (KeyboardInterrupt; with `out`, a checkpoint is left).

    ``resume=True`` continues the run in `out` from its checkpoint, as ``eqpm train
    --resume``: with the configuration stored in the checkpoint, of which only `epochs`
    and run settings (threads, backend, quiet, ...) may be given; any other key must equal
    the stored value. The folder ends as that of a run never stopped. ``resume=DIR``
    continues the run in DIR, finishing in `out` when it is given (--resume DIR --out)."""
    folder = _resume_folder(resume, out, "run")
    if out is not None and not (folder and isinstance(resume, (bool, np.bool_))):
        keys = {**keys, "out": os.fspath(out)}
    return Run._from_core(_core.train(_keys(keys), _progress(progress), folder))


def sweep(
    q: Union[None, str, Iterable[float]] = None,
    out: Optional[PathLike] = None,
    *,
    objective: Union[None, str, Sequence[str]] = None,
    check_tol: float = 0.01,
    resume: bool = False,
    progress: Union[None, bool, ProgressCallback] = None,
    **keys: Any,
) -> dict:
    """``eqpm sweep``: the plain (beta = 1) baseline and one model per q (or per objective),
    in-process. Returns {"plain": Run, "q=4": Run, ...}; with `out`, writes each run's
    folder, sweep.csv and mq_check.csv as the CLI does.

    ``resume=True`` continues the sweep stopped in `out`, given the same q (or objective)
    list: each run begun continues from its checkpoint (a finished one is only evaluated
    again), as ``eqpm train --resume`` would each run's folder, the rest are trained, and
    the folder ends as that of a sweep never stopped. The configuration is the one its
    runs stored: only `epochs` and run settings may be given, any other key must equal the
    stored value (beta too, unless the sweep stopped in its plain run, which does not
    record it: then give it again)."""
    if q is not None and objective is not None:
        raise ValueError("--q and --objective: give one of them (--objective power:0,4 is --q 0,4)")
    if objective is not None:
        text = objective if isinstance(objective, str) else ",".join(objective)
        specs = _core.split_objectives(text)
    else:
        qs = [0, 1, 4, 19] if q is None else q
        items = qs.split(",") if isinstance(qs, str) else list(qs)
        specs = [_core.objective_spec("power:" + _text("q", v).strip()) for v in items]
    if not isinstance(check_tol, numbers.Real) or not 0 <= check_tol <= 1:
        raise ValueError(f"--check-tol: expected a number in [0, 1], got '{check_tol}'")
    folder = _resume_folder(resume, out, "sweep")
    if out is not None and not folder:
        keys = {**keys, "out": os.fspath(out)}
    runs = _core.sweep(_keys(keys), specs, float(check_tol), _progress(progress), folder)
    return {name: Run._from_core(d) for name, d in runs}


def info() -> dict:
    """What ``eqpm info`` reports: version, build, commit, CUDA."""
    return {
        "version": _core.__version__,
        "build_type": _core.build_type,
        "commit": _core.commit,
        "cuda_compiled": _core.cuda_compiled(),
        "cuda_devices": list(_core.cuda_devices()),
    }
