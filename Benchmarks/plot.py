"""Plots of `baton-bench compare` (Benchmarks/results/latest.json).

usage: plot.py LATEST_JSON OUTPUT_DIR

Writes restart-latency-{instant,slow}.png (p99 and max latency per 250 ms with
the restart triggers and failed requests marked, one panel per contender),
restart-memory-{instant,slow}.png (total PSS of each supervisor's process tree
over time) and recycle.png. Uses the first repetition's time series.
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {
    "baton+gunicorn": "#1f77b4",
    "baton+puma": "#17becf",
    "baton+demo-worker": "#2ca02c",
    "gunicorn": "#ff7f0e",
    "uwsgi": "#9467bd",
    "puma": "#d62728",
    "baton+puma(mold)": "#8c564b",
    "baton+python(mold)": "#e377c2",
    "baton+puma(mold,refork)": "#c49c94",
    "baton+python(mold,refork)": "#f7b6d2",
    "gunicorn preload": "#bcbd22",
    "puma preload": "#7f7f7f",
}


def gaps(values):
    """Latency per bucket, None where no request completed (drawn as a gap)."""
    return [v if v > 0 else float("nan") for v in values]


def first_runs(runs, variant):
    """The repetition-0 run of each contender for one app variant, in run order."""
    return [r for r in runs if r["variant"] == variant and r["repetition"] == 0 and r["series"]["t"]]


def latency_figure(runs, title, path):
    if not runs:
        return False
    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 1.55 * len(runs) + 0.8), sharex=True, squeeze=False)
    for ax, run in zip(axes[:, 0], runs):
        s = run["series"]
        color = COLORS.get(run["contender"], "k")
        ax.plot(s["t"], gaps(s["max"]), color=color, lw=0.8, alpha=0.45, label="max")
        ax.plot(s["t"], gaps(s["p99"]), color=color, lw=1.2, label="p99")
        ax.set_yscale("log")
        for k, trig in enumerate(s["triggers"]):
            ax.axvline(trig, color="k", ls="--", lw=0.9)
            ax.text(trig, 1.0, " restart %d" % (k + 1), transform=ax.get_xaxis_transform(), fontsize=7, va="top")
        fails = [(t, n) for t, n in zip(s["t"], s["failures"]) if n]
        if fails:
            ymax = max(s["max"]) or 1
            ax.scatter([t for t, _ in fails], [ymax] * len(fails), marker="x", color="red", s=18, zorder=5)
        failed = run["failedInWindow"]
        done = "/".join("yes" if x is not None else "NO" for x in run["triggerSeconds"])
        ax.set_title("%s: %d failed, completed %s" % (run["contender"], failed, done), fontsize=8, loc="left")
        ax.set_ylabel("ms", fontsize=7)
        ax.set_xlim(left=0)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("seconds since load start (red x: failed requests)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def memory_figure(runs, title, path):
    if not runs:
        return False
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for run in runs:
        s = run["series"]
        color = COLORS.get(run["contender"], "k")
        ax.plot(s["memoryT"], s["pssMiB"], color=color, lw=1.3, label=run["contender"])
        for trig in s["triggers"]:
            ax.axvline(trig, color=color, ls=":", lw=0.8)
    ax.set_xlabel("seconds since load start (dotted: restart triggers)", fontsize=8)
    ax.set_ylabel("total PSS of the supervisor's tree, MiB", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, ncol=3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def recycle_figure(runs, path):
    runs = [r for r in runs if r["repetition"] == 0 and r["series"]["t"]]
    if not runs:
        return False
    fig, (lat, mem) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    for run in runs:
        s = run["series"]
        color = COLORS.get(run["contender"], "k")
        lat.plot(s["t"], gaps(s["p99"]), color=color, lw=1.1, label="%s p99" % run["contender"])
        mem.plot(s["memoryT"], s["pssMiB"], color=color, lw=1.3, label=run["contender"])
    lat.set_yscale("log")
    lat.set_ylabel("p99 ms", fontsize=8)
    mem.set_ylabel("total PSS, MiB", fontsize=8)
    mem.set_xlabel("seconds since load start", fontsize=8)
    for ax in (lat, mem):
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    lat.set_title("memory-driven recycling: app leaks 8 KiB per request", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot.py LATEST_JSON OUTPUT_DIR")
    with open(sys.argv[1]) as f:
        results = json.load(f)["results"]
    out = sys.argv[2]
    written = []
    for variant in ("instant", "slow"):
        runs = first_runs(results["restart"], variant)
        boot = "2 s boot" if variant == "slow" else "instant boot"
        name = "restart-latency-%s.png" % variant
        if latency_figure(runs, "restart every worker twice under load (%s app, %s)" % (variant, boot), os.path.join(out, name)):
            written.append(name)
        name = "restart-memory-%s.png" % variant
        if memory_figure(runs, "total memory during the restarts (%s app)" % variant, os.path.join(out, name)):
            written.append(name)
    if recycle_figure(results["recycle"], os.path.join(out, "recycle.png")):
        written.append("recycle.png")
    print("plots: " + ", ".join(written))


if __name__ == "__main__":
    main()
