#!/usr/bin/python3
"""Markdown tables from Google Benchmark JSON written by tools/bench.sh.

    tools/bench_table.py BENCH.json [MORE.json ...]

One row per benchmark: workload, N, B, S, path, time per step (ms, real time or the
manual/device time where the benchmark reports one) and agent-sample evaluations per
second; then, per benchmark family and workload, the slope of a least-squares fit of
log(time) on log(N), which is 1 for cost linear in the number of agents.

GPU rows (BM_Gpu*, from benchmarks/bench_gpu.cpp) get a second table: the speed-up of the GPU
step over the CPU backend on the same workload and N (BM_CpuStepSameWorkload, same run or
another JSON given here), the achieved FLOP rate and bandwidth of the benchmark's model and
their fractions of the H200's FP32 and HBM peaks, and, for the regret stage, the median
CUDA-event time of each stage on warm eager steps.
"""
import json
import math
import re
import sys
from collections import defaultdict


def parse_name(name):
    fields = dict(re.findall(r"(\w+):([\w.]+)", name))
    family = name.split("/")[0]
    return family, fields


def main(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        context = data.get("context", {})
        print(f"<!-- {path}: {context.get('host_name', '?')}, {context.get('num_cpus', '?')} CPUs "
              f"at {context.get('mhz_per_cpu', '?')} MHz, {context.get('date', '')} -->")
        for b in data.get("benchmarks", []):
            if b.get("run_type") == "aggregate" or b.get("error_occurred"):
                continue
            family, fields = parse_name(b["name"])
            label = b.get("label", "")
            for k, v in re.findall(r"(\w+)=([\w.]+)", label):
                fields.setdefault(k, v)
            unit = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b.get("time_unit", "ns")]
            ms = b["real_time"] * unit
            rows.append((family, b.get("label", "").split(" ")[0] or fields.get("workload", "?"),
                         int(fields.get("N", 0)), fields.get("B", "?"), fields.get("S", "?"),
                         "gpu" if family.startswith("BM_Gpu") else
                         {"0": "reference", "1": "generic"}.get(fields.get("path"), "automatic"), ms,
                         b.get("items_per_second", float("nan")), b))
    print("| benchmark | workload | N | B | S | path | ms / step | evaluations / s |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:,} | {r[3]} | {r[4]} | {r[5]} | {r[6]:.3f} | {r[7]:.3g} |")
    fits = defaultdict(list)
    for r in rows:
        fits[(r[0], r[1], r[3], r[4], r[5])].append((r[2], r[6]))
    print("\n| benchmark | workload | B | S | path | slope of log time vs log N |")
    print("| --- | --- | ---: | ---: | --- | ---: |")
    for key, pts in sorted(fits.items()):
        pts = [(n, t) for n, t in pts if n > 0 and t > 0]
        if len(pts) < 2:
            continue
        xs = [math.log(n) for n, _ in pts]
        ys = [math.log(t) for _, t in pts]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else float("nan")
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4]} | {slope:.2f} |")
    gpu_table(rows)


def gpu_table(rows):
    gpu = [r for r in rows if r[5] == "gpu"]
    if not gpu:
        return
    cpu = {(r[1], r[2]): r[6] for r in rows if r[0] == "BM_CpuStepSameWorkload"}
    step = {(r[1], r[2]): r[6] for r in rows if r[0] == "BM_GpuStep"}

    def num(b, key, scale=1.0, fmt=".3g"):
        v = b.get(key)
        return "" if v is None else format(v * scale, fmt)

    print("\n| benchmark | workload | N | ms / step | speed-up vs CPU | GFLOP/s | GB/s "
          "| % FP32 peak | % HBM peak | stage medians (ms): fwd / sampling / regrets / "
          "reductions / bwd / adam |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in gpu:
        b = r[8]
        # The step's speed-up: the CPU step against the GPU step (for the regret stage too,
        # whose own time is only part of a step).
        c, g = cpu.get((r[1], r[2])), step.get((r[1], r[2]))
        speedup = f"{c / g:.1f}x" if c and g else "(no CPU row)"
        stages = ""
        if "regrets_ms_median" in b:
            stages = " / ".join(num(b, f"{k}_ms_median", fmt=".3f") for k in
                                ("forward", "sampling", "regrets", "reductions", "backward", "optimiser"))
        print(f"| {r[0]} | {r[1]} | {r[2]:,} | {r[6]:.3f} | {speedup} | {num(b, 'flop_per_s', 1e-9)} "
              f"| {num(b, 'bytes_per_s', 1e-9)} | {num(b, 'frac_fp32_peak', 100)} "
              f"| {num(b, 'frac_hbm_peak', 100)} | {stages} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
