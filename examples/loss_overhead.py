#!/usr/bin/env python3
"""What EquitableLoss costs per training step, against a whole step of the eqpm program at
the same N (agents), B (batch), S (samples) and H (horizon), both on the CPU.

    python examples/loss_overhead.py --eqpm build/eqpm [--agents 1000 --batch 64 ...]

The loss is timed alone (forward and backward on a (B, H) forecast, no network), the
program by its own account of the time inside its training steps (summary.json
train.seconds / train.steps: forward, regrets, weights, backward and Adam), with the
regret term on from the first step (--warm-start-epochs 0, --beta 0.1).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import eqpm
from eqpm.torch import EquitableLoss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eqpm", required=True, help="the eqpm program")
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--horizon", type=int, default=12)
    ap.add_argument("--objective", default="power:4")
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    N, B, S, H = args.agents, args.batch, args.samples, args.horizon

    pop = eqpm.Population.generate(agents=N, horizon=H)
    loss_fn = EquitableLoss(pop, objective=args.objective, samples=S, beta=0.1)
    rng = np.random.default_rng(0)
    target = torch.tensor(rng.uniform(0.5, 1.5, (B, H)), dtype=torch.float32)
    pred = (target * 1.1).requires_grad_(True)
    for _ in range(5):  # warm-up
        loss_fn(pred, target, 0).backward()
    start = time.perf_counter()
    for k in range(args.steps):
        pred.grad = None
        loss_fn(pred, target, 24 * k).backward()
    loss_ms = 1e3 * (time.perf_counter() - start) / args.steps

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [args.eqpm, "train", "--out", str(out), "--agents", str(N), "--batch", str(B),
               "--samples", str(S), "--horizon", str(H), "--objective", args.objective,
               "--epochs", "2", "--warm-start-epochs", "0", "--beta", "0.1", "--backend", "cpu",
               "--series-hours", "4000", "--quiet"]
        subprocess.run(cmd, check=True, capture_output=True)
        train = json.loads((out / "summary.json").read_text())["train"]
    cli_ms = 1e3 * train["seconds"] / train["steps"]
    print(f"N = {N}, B = {B}, S = {S}, H = {H}, {args.objective}, {torch.get_num_threads()} threads")
    print(f"  EquitableLoss forward + backward: {loss_ms:.2f} ms per step")
    print(f"  eqpm train, whole CPU step:       {cli_ms:.2f} ms per step ({train['steps']} steps)")
    print(f"  ratio: {loss_ms / cli_ms:.2f}")


if __name__ == "__main__":
    main()
