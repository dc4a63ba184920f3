#!/usr/bin/env python3
"""Table of the backtests under a tools/backtest-all.sh folder (OUT/<region>/<setup>/backtest.csv).

    tools/backtest_table.py OUT

One row per region, setup and run: the pooled test mean and max (each agent's regret
averaged over every test hour of every fold) with the change against plain, the range of
the per-fold change of the mean, and the folds where the run's mean beats plain's. Then
the out-of-sample claim per setup: the q = 19 run (the largest q) at most 1% above plain
on pooled mean and max, and below plain on both where the agents conflict.
"""
import csv
import os
import sys

TOL = 0.01


def rel(v, ref):
    return v / ref - 1.0 if ref > 0 else float("nan")


def pct(x):
    return f"{100 * x:+.1f}%"


def main():
    out = sys.argv[1]
    times = {}
    tpath = os.path.join(out, "logs", "times.csv")
    if os.path.exists(tpath):
        for r in csv.DictReader(open(tpath)):
            times[(r["region"], r["setup"])] = r["seconds"]
    lines = ["# Out of sample: monthly-refit backtests", "",
             "Pooled test regret per agent (each agent's regret averaged over every test hour of "
             "every fold); the change against plain in brackets.", "",
             "| region | setup | run | beta by fold | pooled mean | pooled max | mean vs plain, per fold "
             "| folds better on mean |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    verdicts = []
    for region in sorted(os.listdir(out)):
        rdir = os.path.join(out, region)
        if region == "logs" or not os.path.isdir(rdir):
            continue
        for setup in sorted(os.listdir(rdir)):
            path = os.path.join(rdir, setup, "backtest.csv")
            if not os.path.exists(path):
                continue
            rows = list(csv.DictReader(open(path)))
            runs = []
            for r in rows:
                if r["run"] not in runs:
                    runs.append(r["run"])
            pooled = {r["run"]: r for r in rows if r["fold_start"] == "all"}
            folds = {run: [r for r in rows if r["run"] == run and r["fold_start"] != "all"]
                     for run in runs}
            plain = pooled["plain"]
            pm, px = float(plain["mean"]), float(plain["max"])
            for run in runs:
                p = pooled[run]
                m, x = float(p["mean"]), float(p["max"])
                betas = " ".join(f["beta"] for f in folds[run])
                if run == "plain":
                    lines.append(f"| {region} | {setup} | plain | 1 | {m:.4g} | {x:.4g} | | |")
                    continue
                per = [rel(float(f["mean"]), float(pf["mean"]))
                       for f, pf in zip(folds[run], folds["plain"])]
                better = sum(1 for v in per if v < 0)
                lines.append(f"| | | {run} | {betas} | {m:.4g} ({pct(rel(m, pm))}) | {x:.4g} ({pct(rel(x, px))}) "
                             f"| {pct(min(per))} to {pct(max(per))} | {better} of {len(per)} |")
            qruns = [r for r in runs if r != "plain"]
            top = max(qruns, key=lambda r: float(r.split("=")[1]))
            dm = rel(float(pooled[top]["mean"]), pm)
            dx = rel(float(pooled[top]["max"]), px)
            conflicting = setup == "default" or setup.startswith("paper-dc-")
            ok = dm <= TOL and dx <= TOL
            strict = dm < 0 and dx < 0
            if conflicting:
                verdict = "pass" if strict else ("FAIL: within 1%, not below plain" if ok else "FAIL")
            else:
                verdict = "pass" if ok else "FAIL"
            verdicts.append((region, setup, top, dm, dx, conflicting, verdict,
                             times.get((region, setup), "")))
    lines += ["", "The claim: the largest-q model's pooled mean and max at most 1% above plain's, "
              "and below plain's on both where the agents conflict (default, datacenter setups).", "",
              "| region | setup | run | mean vs plain | max vs plain | agents conflict | outcome | seconds |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for region, setup, top, dm, dx, conflicting, verdict, secs in verdicts:
        lines.append(f"| {region} | {setup} | {top} | {pct(dm)} | {pct(dx)} | "
                     f"{'yes' if conflicting else 'no'} | {verdict} | {secs} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
