#!/usr/bin/env python3
"""A PyTorch LSTM forecaster trained with eqpm's equitable loss, against the same LSTM
trained on MSE, on a real carbon-intensity series: prints the per-agent regret statistics
of both on the test split.

    python examples/torch_lstm.py                       # ../shared/data, CISO 2022
    python examples/torch_lstm.py --objective power:19 --agents 1000

The series is normalised by its training mean (DESIGN.md 2.1), so regrets are in the units
eqpm trains in; the split is chronological (the first 70% of forecast start hours train).
Both models start from the same weights and share the first --warm-epochs epochs on MSE
(eqpm's warm start); the equitable one then trains on (1 - beta) F/Fbar + beta MSE/MSEbar.
"""

from __future__ import annotations

import argparse
import copy
import csv
import time
from pathlib import Path

import numpy as np
import torch

import eqpm
from eqpm.torch import EquitableLoss

REPO = Path(__file__).resolve().parents[1]


def load_series(path: Path, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Values and hours of day of an hourly CSV; empty cells filled by linear interpolation."""
    values, hours = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            cell = row[column].strip()
            values.append(float(cell) if cell else np.nan)
            hours.append(int(row["timestamp"][11:13]))
    v = np.array(values)
    gaps = np.isnan(v)
    if gaps.any():
        idx = np.arange(len(v))
        v[gaps] = np.interp(idx[gaps], idx[~gaps], v[~gaps])
        print(f"{path.name}: {int(gaps.sum())} missing hours filled by interpolation")
    return v, np.array(hours)


class LSTMForecaster(torch.nn.Module):
    """The previous L hours (value, sin and cos of the hour) -> the next H values (> 0)."""

    def __init__(self, horizon: int, hidden: int = 32) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(3, hidden, batch_first=True)
        self.head = torch.nn.Sequential(torch.nn.Linear(hidden, horizon), torch.nn.Softplus())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def windows(z: np.ndarray, hours: np.ndarray, L: int, H: int):
    """Inputs (U, L, 3), targets (U, H) and start hours t (U,) for L <= t <= T - H."""
    t = np.arange(L, len(z) - H + 1)
    ang = 2 * np.pi * hours / 24
    feats = np.stack([z, np.sin(ang), np.cos(ang)], axis=1)
    x = np.stack([feats[s - L:s] for s in t])
    y = np.stack([z[s:s + H] for s in t])
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), t


def stats(r: np.ndarray) -> str:
    jain = r.sum() ** 2 / (len(r) * (r ** 2).sum())
    return (f"mean {r.mean():.4f}  p95 {np.percentile(r, 95):.4f}  worst agent {r.max():.4f}  "
            f"jain {jain:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--series", default="carbon_intensity/CISO_2022.csv")
    ap.add_argument("--column", default="avg_CI")
    ap.add_argument("--agents", type=int, default=500)
    ap.add_argument("--mix", default="dc=0.4,ev=0.4,inv=0.2")
    ap.add_argument("--objective", default="power:4")
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--warm-epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=0, help="stop each model after this many steps (0: all)")
    ap.add_argument("--lookback", type=int, default=24)
    ap.add_argument("--horizon", type=int, default=12)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    raw, hours = load_series(args.data / args.series, args.column)
    L, H = args.lookback, args.horizon
    U = len(raw) - L - H + 1
    n_train = int(0.7 * U)
    scale = raw[: L + n_train - 1 + H].mean()  # the training rows' hours (DESIGN.md 2.1)
    x, y, t = windows(raw / scale, hours, L, H)
    x_tr, y_tr, t_tr = x[:n_train], y[:n_train], t[:n_train]
    x_te, y_te, t_te = x[n_train:], y[n_train:], t[n_train:]
    pop = eqpm.Population.generate(agents=args.agents, mix=args.mix, horizon=H, pop_seed=1)
    print(f"{args.series}: {len(raw)} hours, {n_train} training and {len(t_te)} test forecasts; {pop}")

    steps_per_epoch = (n_train + args.batch - 1) // args.batch
    gen = torch.Generator().manual_seed(args.seed)

    def train(model: torch.nn.Module, epochs: range, loss_fn=None) -> tuple[float, int]:
        """Trains `model` over `epochs`; returns the seconds spent in steps and their count."""
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        done, seconds = 0, 0.0
        for epoch in epochs:
            for g in opt.param_groups:  # eqpm's step decay: halve every 4 epochs
                g["lr"] = args.lr * 0.5 ** (epoch // 4)
            order = torch.randperm(n_train, generator=gen)
            for i in range(steps_per_epoch):
                if args.steps and done >= args.steps:
                    return seconds, done
                rows = order[i * args.batch:(i + 1) * args.batch]
                start = time.perf_counter()
                pred = model(x_tr[rows])
                if loss_fn is None:
                    loss = torch.nn.functional.mse_loss(pred, y_tr[rows])
                else:
                    loss = loss_fn(pred, y_tr[rows], torch.from_numpy(t_tr[rows.numpy()]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                seconds += time.perf_counter() - start
                done += 1
        return seconds, done

    mse_model = LSTMForecaster(H)
    train(mse_model, range(args.warm_epochs))
    eq_model = copy.deepcopy(mse_model)  # the warm start both share
    mse_seconds, mse_steps = train(mse_model, range(args.warm_epochs, args.epochs))
    loss_fn = EquitableLoss(pop, objective=args.objective, beta=args.beta, seed=args.seed)
    eq_seconds, eq_steps = train(eq_model, range(args.warm_epochs, args.epochs), loss_fn)

    print(f"\nper-agent regret on the test split ({len(t_te)} forecasts, {len(pop)} agents):")
    worst = {}
    for name, model in (("MSE LSTM", mse_model), (f"equitable LSTM ({args.objective})", eq_model)):
        with torch.no_grad():
            pred = model(x_te).numpy()
        r = eqpm.regrets(pop, pred, y_te.numpy(), start_hour=int(t_te[0]))
        mse = float(np.mean((pred - y_te.numpy()) ** 2))
        worst[name] = r.max()
        print(f"  {name:32s} {stats(r)}  mse {mse:.5f}")
    (mse_name, w_mse), (eq_name, w_eq) = worst.items()
    print(f"\nworst agent: {w_eq:.4f} (equitable) vs {w_mse:.4f} (MSE): "
          f"{100 * (w_eq / w_mse - 1):+.1f}%")
    if eq_steps and mse_steps:
        print(f"time per step after the warm start: {1e3 * eq_seconds / eq_steps:.2f} ms (equitable) "
              f"vs {1e3 * mse_seconds / mse_steps:.2f} ms (MSE)")


if __name__ == "__main__":
    main()
