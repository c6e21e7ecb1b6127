"""The latency distributions as a PNG: one cumulative plot per verb, and growth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cni_calico_py.agent.stats import percentile

from .measure import Results
from .variants import LABELS

COLOURS = {"agent": "tab:purple", "frozen": "tab:blue", "venv": "tab:orange", "ptp": "tab:green"}
TICKS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def _log_axis(axis: Any) -> None:
    """Plain millisecond labels at 1-2-5 steps instead of powers of ten."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    axis.set_major_locator(FixedLocator(TICKS_MS))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def write(results: Results, keys: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, verb in zip(axes.flat, ("ADD", "CHECK", "DEL"), strict=False):
        for key in keys:
            values = sorted(v * 1000 for v in results.latency.get(key, {}).get(verb, []))
            if not values:
                continue
            fractions = [0.0] + [(i + 1) / len(values) for i in range(len(values))]
            ax.step([values[0], *values], fractions, where="post", color=COLOURS[key],
                    label=LABELS[key])
        ax.set_xscale("log")
        _log_axis(ax.xaxis)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(f"{verb} latency (ms, log scale)")
        ax.set_ylabel("fraction of calls")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="center right", fontsize=8)
    growth = axes.flat[3]
    for key in keys:
        per_level = results.growth.get(key, {})
        levels = sorted(per_level)
        p50 = [(percentile(per_level[lvl], 50) or 0) * 1000 for lvl in levels]
        if levels:
            growth.plot(levels, p50, marker="o", color=COLOURS[key], label=LABELS[key])
    growth.set_xticks(sorted({lvl for per in results.growth.values() for lvl in per}))
    growth.set_yscale("log")
    _log_axis(growth.yaxis)
    growth.set_xlabel("pods already in the block")
    growth.set_ylabel("ADD p50 (ms, log scale)")
    growth.grid(True, which="both", alpha=0.3)
    growth.legend(loc="best", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
