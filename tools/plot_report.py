#!/usr/bin/python3
"""Plot an eqpm run or q sweep: per-agent regret distributions, Lorenz curves, training curves.

Usage: tools/plot_report.py DIR

DIR is either
  * a single run's output folder (`eqpm train --out DIR`): agents.csv, metrics.csv and
    optionally summary.json (DESIGN.md section 8.1),
  * an `eqpm eval --out DIR` folder: agents.csv and summary.json, no metrics.csv (no
    training curves then), or
  * a sweep folder (`eqpm sweep --out DIR`): sweep.csv plus one run folder per row of it
    (`plain/`, `q=<value>/`).

PNG files are written into DIR and their paths printed, one per line:
  regret_boxplot.png   box plots + jittered points of per-agent regret per run (one box for
                       a single run), plain first then increasing q; test split and
                       training split panels
  regret_hist.png      histograms of per-agent regret, one panel per run (test filled,
                       training split outlined)
  lorenz.png           Lorenz curve of per-agent test regret per run, Gini in the legend
  training_curves.png  (runs with metrics.csv) normalised training loss, un-normalised
                       objective (when metrics.csv has it), power mean M_q, mean and max
                       regret and MSE (validation) against the optimiser step
  regret_by_family.png box plots of per-agent regret grouped by agent family, per run
Inputs are validated; a missing or malformed file is reported on stderr naming the file
(line and column where it applies) with exit status 2. Output is deterministic (fixed
jitter seed, no timestamps in the PNGs).
"""
import csv
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

AGENT_COLS = ["agent", "family", "regret", "train_regret"]
METRIC_COLS = ["epoch", "step", "loss", "power_mean", "mean", "var", "max", "mse", "seconds"]
OPTIONAL_METRIC_COLS = ["objective"]  # appended later; older folders lack it
SWEEP_COLS = ["run", "q", "beta", "mean", "var", "p95_p5", "max", "jain", "mse"]
PNG_META = {"Software": None}  # keep files byte-identical across matplotlib builds


class InputError(Exception):
    """A missing or malformed input file; reported on stderr with exit status 2."""


def read_csv(path, required, numeric):
    """Rows of a CSV as dicts; checks the header, cell count and numeric, finite cells."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise InputError(f"{path}: empty file (expected header {','.join(required)})")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path}:1: header lacks column(s) {','.join(missing)} "
                         f"(expected {','.join(required)})")
    out = []
    for lineno, cells in enumerate(rows[1:], start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise InputError(f"{path}:{lineno}: {len(cells)} cells, header has {len(header)}")
        row = {}
        for col, (name, cell) in enumerate(zip(header, cells), start=1):
            cell = cell.strip()
            if name in numeric:
                try:
                    val = float(cell)
                except ValueError:
                    raise InputError(f"{path}:{lineno}:{col}: column '{name}': "
                                     f"not a number: '{cell}'") from None
                if not math.isfinite(val):
                    raise InputError(f"{path}:{lineno}:{col}: column '{name}': "
                                     f"non-finite value '{cell}'")
                row[name] = val
            else:
                row[name] = cell
        out.append(row)
    if not out:
        raise InputError(f"{path}: no data rows")
    return out


def load_run(folder, name):
    """One run folder -> dict with per-agent arrays, metric columns and summary."""
    agents = read_csv(os.path.join(folder, "agents.csv"), AGENT_COLS, {"regret", "train_regret"})
    mpath = os.path.join(folder, "metrics.csv")
    metrics = None  # an eval folder has none
    if os.path.exists(mpath):
        rows = read_csv(mpath, METRIC_COLS, set(METRIC_COLS + OPTIONAL_METRIC_COLS))
        cols = METRIC_COLS + [c for c in OPTIONAL_METRIC_COLS if c in rows[0]]
        metrics = {c: np.array([r[c] for r in rows]) for c in cols}
    summary = {}
    spath = os.path.join(folder, "summary.json")
    if os.path.exists(spath):
        try:
            with open(spath) as f:
                summary = json.load(f)
        except (OSError, ValueError) as e:
            raise InputError(f"{spath}: not valid JSON: {e}") from None
        if not isinstance(summary, dict):
            raise InputError(f"{spath}: expected a JSON object")
    return {
        "name": name,
        "family": np.array([r["family"] for r in agents]),
        "test": np.array([r["regret"] for r in agents]),
        "train": np.array([r["train_regret"] for r in agents]),
        "metrics": metrics,
        "summary": summary,
    }


def single_run_name(d):
    """Folder name, plus q and beta from summary.json's config when present."""
    name = os.path.basename(os.path.abspath(d))
    try:
        with open(os.path.join(d, "summary.json")) as f:
            cfg = json.load(f).get("config", {})
        return f"{name} (q={cfg['q']:g}, beta={cfg['beta']:g})"
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return name  # summary.json is optional; load_run reports a malformed one


def run_sort_key(name, q):
    """plain first, then increasing q, then by name (deterministic)."""
    if name == "plain":
        return (0, 0.0, name)
    return (1, q if q is not None else math.inf, name)


def load_sweep(d):
    rows = read_csv(os.path.join(d, "sweep.csv"), SWEEP_COLS, set())
    keyed, seen = [], set()
    for r in rows:
        name = r["run"]
        if not name or name in seen or os.sep in name or name in (".", ".."):
            raise InputError(f"{os.path.join(d, 'sweep.csv')}: bad or duplicate run name '{name}'")
        seen.add(name)
        try:
            q = float(r["q"])
        except ValueError:
            q = None  # e.g. an empty q cell for the plain baseline
        keyed.append((run_sort_key(name, q), name))
    folders = [os.path.join(d, n) for _, n in sorted(keyed)]
    for f in folders:
        if not os.path.isdir(f):
            raise InputError(f"{f}: run folder listed in sweep.csv not found")
    return [load_run(f, os.path.basename(f)) for f in folders]


def run_colors(runs):
    """plain in dark grey, q runs along viridis in sweep order."""
    qruns = [r["name"] for r in runs if r["name"] != "plain"]
    cmap = plt.get_cmap("viridis")
    cols = {n: cmap(0.85 * i / max(1, len(qruns) - 1)) for i, n in enumerate(qruns)}
    cols["plain"] = (0.25, 0.25, 0.25, 1.0)
    return [cols[r["name"]] for r in runs]


def auto_scale(ax, values, axis="y"):
    """Log scale when positive values span more than two decades (symlog if zeros exist)."""
    v = np.concatenate([np.ravel(x) for x in values]) if values else np.array([])
    pos = v[v > 0]
    if pos.size and pos.max() / pos.min() > 100.0:
        setter = ax.set_yscale if axis == "y" else ax.set_xscale
        if (v <= 0).any():
            setter("symlog", linthresh=float(pos.min()))
        else:
            setter("log")
        return True
    return False


def lorenz_gini(x):
    """Lorenz curve points and Gini of non-negative values; all-zero -> equality, Gini 0."""
    x = np.sort(np.clip(np.asarray(x, dtype=float), 0.0, None))
    n, total = x.size, x.sum()
    share = np.linspace(0.0, 1.0, n + 1)
    if n == 0 or total <= 0.0:
        return share, share.copy(), 0.0
    cum = np.concatenate([[0.0], np.cumsum(x) / total])
    gini = float(np.sum((2.0 * np.arange(1, n + 1) - n - 1) * x) / (n * total))
    return share, cum, gini


def save(fig, d, name, written):
    path = os.path.join(d, name)
    fig.savefig(path, dpi=110, metadata=PNG_META)
    plt.close(fig)
    written.append(path)


def plot_boxplot(runs, d, written):
    names, cols = [r["name"] for r in runs], run_colors(runs)
    families = sorted(set(np.concatenate([r["family"] for r in runs])))
    fam_marker = dict(zip(families, "osD^v<>ph*"))
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(runs) * 2), 5), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, split, title in zip(axes[0], ("test", "train"), ("test split", "training split")):
        data = [r[split] for r in runs]
        ax.boxplot(data, positions=range(len(runs)), widths=0.6, showfliers=False,
                   medianprops={"color": "k"})
        for i, (r, c) in enumerate(zip(runs, cols)):
            for fam in families:
                v = r[split][r["family"] == fam]
                x = i + rng.uniform(-0.22, 0.22, v.size)
                ax.scatter(x, v, s=12, color=c, alpha=0.6, marker=fam_marker[fam],
                           label=fam if i == 0 else None, edgecolors="none")
        ax.set_xticks(range(len(runs)))
        ax.set_xticklabels(names, rotation=30 if len(runs) > 6 else 0)
        ax.set_xlabel("run")
        ax.set_ylabel("per-agent regret")
        ax.set_title(f"Per-agent regret, {title}")
        auto_scale(ax, data)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(title="family (marker)", fontsize=8, loc="best")
    fig.tight_layout()
    save(fig, d, "regret_boxplot.png", written)


def plot_hist(runs, d, written):
    allv = np.concatenate([np.concatenate([r["test"], r["train"]]) for r in runs])
    pos = allv[allv > 0]
    lo, hi = float(allv.min()), float(allv.max())
    use_log = lo > 0 and pos.size and hi / lo > 100.0
    if use_log:
        bins = np.geomspace(lo, hi, 31)
    else:
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
    cols = run_colors(runs)
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 1.0 + 1.7 * len(runs)), sharex=True,
                             squeeze=False)
    for ax, r, c in zip(axes[:, 0], runs, cols):
        ax.hist(r["test"], bins=bins, color=c, alpha=0.55, label="test")
        ax.hist(r["train"], bins=bins, histtype="step", color="k", lw=1.0, label="train split")
        ax.set_ylabel("agents")
        ax.set_xlabel("per-agent regret")
        ax.set_title(f"{r['name']}  (test mean {r['test'].mean():.4g}, "
                     f"max {r['test'].max():.4g})", fontsize=9, loc="left")
        if use_log:
            ax.set_xscale("log")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    save(fig, d, "regret_hist.png", written)


def plot_lorenz(runs, d, written):
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="equality")
    for r, c in zip(runs, run_colors(runs)):
        x, y, g = lorenz_gini(r["test"])
        ax.plot(x, y, color=c, lw=1.6, label=f"{r['name']} (Gini {g:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("cumulative share of agents (lowest regret first)")
    ax.set_ylabel("cumulative share of total test regret")
    ax.set_title("Lorenz curve of per-agent test regret")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, d, "lorenz.png", written)


def plot_training(runs, d, written):
    runs = [r for r in runs if r["metrics"] is not None]
    if not runs:
        return
    panels = [("loss", "training loss (normalised)", "mean step loss (about 1)"),
              ("objective", "objective (un-normalised), validation",
               "(1 - beta) M_q + beta MSE"),
              ("power_mean", "power mean M_q, validation", "M_q of per-agent regret"),
              ("mean", "mean regret, validation", "mean per-agent regret"),
              ("max", "max regret, validation", "max per-agent regret"),
              ("mse", "forecast MSE, validation", "MSE (normalised units)")]
    panels = [p for p in panels if any(p[0] in r["metrics"] for r in runs)]
    ncol = 3 if len(panels) > 4 else 2
    nrow = (len(panels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.5 * ncol, 3.75 * nrow), squeeze=False)
    cols = run_colors(runs)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax, (key, title, ylabel) in zip(axes.ravel(), panels):
        shown = []
        for r, c in zip(runs, cols):
            m = r["metrics"]
            if key in m:
                ax.plot(m["step"], m[key], marker="o", ms=3, color=c, label=r["name"])
                shown.append(m[key])
        ax.set_title(title)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(ylabel)
        auto_scale(ax, shown)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    save(fig, d, "training_curves.png", written)


def plot_by_family(runs, d, written):
    families = sorted(set(np.concatenate([r["family"] for r in runs])))
    nr, cols = len(runs), run_colors(runs)
    width = 0.8 / nr
    fig, axes = plt.subplots(2, 1, figsize=(max(7, 1.2 + 0.5 * nr * len(families)), 8),
                             squeeze=False)
    for ax, split, title in zip(axes[:, 0], ("test", "train"), ("test split", "training split")):
        data_all = []
        for i, (r, c) in enumerate(zip(runs, cols)):
            pos, data = [], []
            for j, fam in enumerate(families):
                v = r[split][r["family"] == fam]
                if v.size:
                    pos.append(j - 0.4 + width * (i + 0.5))
                    data.append(v)
            if not data:
                continue
            data_all.extend(data)
            bp = ax.boxplot(data, positions=pos, widths=0.85 * width, patch_artist=True,
                            showfliers=True, flierprops={"markersize": 3},
                            medianprops={"color": "k"})
            for box in bp["boxes"]:
                box.set_facecolor(c)
                box.set_alpha(0.7)
            for x, v in zip(pos, data):  # a box of under 5 agents says little: show them
                if v.size < 5:
                    ax.scatter(np.full(v.size, x), v, s=16, color=c, edgecolors="k", zorder=3)
            ax.plot([], [], "s", color=c, label=r["name"])
        counts = [int((runs[0]["family"] == f).sum()) for f in families]
        ax.set_xticks(range(len(families)))
        ax.set_xticklabels([f"{f}\n(n={n})" for f, n in zip(families, counts)])
        ax.set_xlim(-0.5, len(families) - 0.5)
        ax.set_xlabel("agent family")
        ax.set_ylabel("per-agent regret")
        ax.set_title(f"Per-agent regret by family, {title}")
        auto_scale(ax, data_all)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=min(nr, 6))
    fig.tight_layout()
    save(fig, d, "regret_by_family.png", written)


def main(argv):
    if len(argv) == 2 and argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    if len(argv) != 2:
        print("usage: plot_report.py DIR  (see --help)", file=sys.stderr)
        return 2
    d = argv[1]
    try:
        if not os.path.isdir(d):
            raise InputError(f"{d}: not a folder")
        if os.path.isfile(os.path.join(d, "sweep.csv")):
            runs = load_sweep(d)
        elif os.path.isfile(os.path.join(d, "agents.csv")):  # a train or an eval folder
            runs = [load_run(d, single_run_name(d))]
        else:
            raise InputError(f"{d}: neither a sweep folder (no sweep.csv) nor a run folder "
                             "(no agents.csv)")
    except InputError as e:
        print(f"plot_report: error: {e}", file=sys.stderr)
        return 2
    written = []
    plot_boxplot(runs, d, written)
    plot_hist(runs, d, written)
    plot_lorenz(runs, d, written)
    plot_training(runs, d, written)
    plot_by_family(runs, d, written)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
