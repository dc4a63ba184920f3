"""Shared pieces of the Python tests: the real data folder, the eqpm program to compare
with, output folders compared file by file, and a numpy reference of every family's
regret (DESIGN.md 4)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("EQPM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "carbon_intensity" / "CISO_2022.csv").exists():
        pytest.skip(f"real data not found in {DATA} (set EQPM_SHARED_DATA)")
    return DATA


@pytest.fixture(scope="session")
def eqpm_bin() -> str:
    """The command-line program of this checkout: EQPM_BIN, else build/eqpm, else PATH."""
    for candidate in (os.environ.get("EQPM_BIN"), str(REPO / "build" / "eqpm"), shutil.which("eqpm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("the eqpm program is not built (set EQPM_BIN)")


def run_cli(eqpm_bin: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([eqpm_bin, *args], cwd=cwd, capture_output=True, text=True, check=False)


# Files whose bytes hold wall-clock timings (train.seconds, steps_per_second, the per-epoch
# `seconds` column, and the checkpoint's copies of those): compared with the timings left out.
TIMED = {"summary.json", "metrics.csv", "checkpoint.safetensors", "anneal_start.safetensors"}


def _strip_seconds(csv: str) -> str:
    rows = [line.split(",") for line in csv.splitlines()]
    col = rows[0].index("seconds")
    return "\n".join(",".join(r[:col] + r[col + 1:]) for r in rows)


def without_timings(path: Path):
    """A file of TIMED without its timings; a safetensors file as (tensor table, metadata,
    tensor bytes)."""
    if path.name == "summary.json":
        s = json.loads(path.read_text())
        for k in ("seconds", "steps_per_second"):
            s["train"].pop(k, None)
        return s
    if path.name == "metrics.csv":
        rows = [line.split(",") for line in path.read_text().splitlines()]
        col = rows[0].index("seconds")
        return [r[:col] + r[col + 1:] for r in rows]
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__")
    meta["eqpm.metrics_csv"] = _strip_seconds(meta["eqpm.metrics_csv"])
    meta["eqpm.epoch_tally"] = meta["eqpm.epoch_tally"].rsplit(",", 1)[0]
    meta["eqpm.train_totals"] = meta["eqpm.train_totals"].rsplit(",", 1)[0]
    return header, meta, data[8 + n:]


def compare_folders(a: Path, b: Path) -> int:
    """Asserts that folders `a` and `b` hold the same files, byte for byte but for the
    timings of TIMED files; returns how many."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if rel.name in TIMED:
            assert without_timings(a / rel) == without_timings(b / rel), rel
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    return len(files_a)


def reference_regrets(table: dict, pred: np.ndarray, target: np.ndarray, t: np.ndarray,
                      demand: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Each agent's regret averaged over rows, in float64, straight from DESIGN.md 4.1-4.3."""
    pred = pred.astype(np.float64)
    target = target.astype(np.float64)
    demand = demand.astype(np.float64)
    out = np.zeros(len(table["agent"]))
    for n, family in enumerate(table["family"]):
        r = np.zeros(len(pred))
        for i, (v, y) in enumerate(zip(pred, target)):
            if family == "datacenter":
                h = int(table["hour"][n])
                vv = max(v[h], floor)
                d = table["scale"][n] * demand[(t[i] + int(table["phase"][n])) % len(demand)]
                r[i] = np.sqrt(table["lambda"][n] * d) * (np.sqrt(y[h]) - np.sqrt(vv)) ** 2 / np.sqrt(vv)
            elif family == "ev_charging":
                a, b, k = int(table["window_start"][n]), int(table["window_end"][n]), int(table["k"][n])
                key = np.maximum(v[a:b], floor)
                chosen = y[a:b][np.argsort(key, kind="stable")[:k]].sum()
                best = np.sort(y[a:b])[:k].sum()
                r[i] = table["energy"][n] * (chosen - best)
            else:
                h = int(table["hour"][n])
                a = max(v[h], floor)
                r[i] = table["cu"][n] * (y[h] - a) if a < y[h] else table["co"][n] * (a - y[h])
        out[n] = r.mean()
    return out
