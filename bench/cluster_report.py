"""The cluster benchmark's rows as a Markdown table and a PNG of each figure against N."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

ORDER = {"VXLAN": 0, "Off": 1}


def _p50_max(values: list[float], scale: float = 1, digits: int = 2) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * scale:.{digits}f} / {max(values) * scale:.{digits}f}"


def _mean_max(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    return f"{statistics.mean(values):.{digits}f} / {max(values):.{digits}f}"


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["label"] != "before", row.get("datastore", "etcd"), ORDER.get(row["mode"], 9),
            row["peering"], row["nodes"])


def _mode(row: dict[str, Any]) -> str:
    mode = "BGP" if row["mode"] == "Off" else row["mode"]
    return mode if row.get("datastore", "etcd") == "etcd" else f"{mode} (Kubernetes)"


def _requests(row: dict[str, Any]) -> float:
    """Per minute, idle (rows from before the Kubernetes datastore name them etcd_*)."""
    return float(row.get("requests_per_min", row.get("etcd_requests_per_min", 0.0)))


def _writes(row: dict[str, Any]) -> float:
    return float(row.get("writes_per_min", row.get("etcd_writes_per_min", 0.0)))


def render(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# Cluster scale", "",
        f"`{command}`; one underlay, one datastore (etcd, or the Kubernetes API on etcd),",
        "N node namespaces on one machine. Joins and leaves: p50 / max over the runs; join",
        "from the new node's record in the datastore (and from its daemon's start); idle",
        "figures over the idle window, mean / max per node.", "",
        "| code | mode | N | peering | converge-all (s) | join p50 / max (s) | join from start p50 (s) "
        "| leave p50 / max (s) | idle CPU per daemon (% of a core) | BIRD CPU per node (%) "
        "| RSS per daemon (MiB) | datastore requests/min idle | datastore writes/min idle |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=_key):
        start = f"{statistics.median(r['join_from_start_s']):.2f}" if r["join_from_start_s"] else "-"
        lines.append(
            f"| {r['label']} | {_mode(r)} | {r['nodes']} | {r['peering']} | {r['converge_s']:.2f} "
            f"| {_p50_max(r['join_s'], digits=3)} | {start} | {_p50_max(r['leave_s'], digits=3)} "
            f"| {_mean_max(r['cpu_pct'], 3)} | {_mean_max(r['bird_cpu_pct'], 3)} "
            f"| {_mean_max(r['rss_mib'], 0)} | {_requests(r):.0f} | {_writes(r):.0f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=_key):
        name = f"{r['label']}: {_mode(r)}" + (f", {r['peering']}" if r["peering"] != "-" else "")
        series.setdefault(name, []).append(r)
    figures: list[tuple[str, Callable[[dict[str, Any]], float | None]]] = [
        ("converge-all (s)", lambda r: r["converge_s"]),
        ("join p50, from the record in the datastore (s)",
         lambda r: statistics.median(r["join_s"]) if r["join_s"] else None),
        ("leave p50 (s)", lambda r: statistics.median(r["leave_s"]) if r["leave_s"] else None),
        ("idle CPU per daemon (% of a core)", lambda r: statistics.mean(r["cpu_pct"])),
        ("RSS per daemon (MiB)", lambda r: statistics.mean(r["rss_mib"])),
        ("datastore requests per minute, idle", _requests),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (title, value) in zip(axes.flat, figures, strict=True):
        for name, points in series.items():
            xs = [p["nodes"] for p in points if value(p) is not None]
            ys = [value(p) for p in points if value(p) is not None]
            ax.plot(xs, ys, marker="o", linestyle="--" if name.startswith("before") else "-",
                    label=name)
        ax.set_xlabel("nodes (N)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("calico-py cluster mode against N (one machine, 2 cores)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
