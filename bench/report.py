"""The Markdown report: every figure, its ratio to ptp + host-local, the targets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cni_calico_py.agent.stats import percentile

from .breakdown import Profile
from .measure import Results
from .stats import ratio
from .variants import LABELS

REFERENCE = "ptp"
SMALL_MS = 1.0
# (label, limit, unit, which value): the cold path's targets, and the agent's.
COLD_TARGETS = (
    ("ADD p50 / ptp ADD p50", 20.0, "x", "add"),
    ("DEL p50 / ptp DEL p50", 10.0, "x", "del"),
    ("peak RSS of an ADD", 50.0, "MiB", "rss"),
)
AGENT_TARGETS = (
    ("ADD p50 / ptp ADD p50", 4.0, "x", "add"),
    ("DEL p50 / ptp DEL p50", 2.0, "x", "del"),
    ("64 ADDs at once / ptp's", 2.0, "x", "burst_add"),
    ("64 DELs at once / ptp's", 2.0, "x", "burst_del"),
)


@dataclass(frozen=True)
class Run:
    header: list[str]
    settings: str
    keys: list[str]
    results: Results
    profile: Profile | None
    plot_name: str | None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


def _ms(values: Sequence[float] | None, q: float) -> float | None:
    found = percentile(values or [], q)
    return None if found is None else found * 1000


Getter = Callable[[str], "float | None"]


def _latency(res: Results, verb: str, q: float) -> Getter:
    return lambda key: _ms(res.latency.get(key, {}).get(verb), q)


def _growth(res: Results, level: int) -> Getter:
    return lambda key: _ms(res.growth.get(key, {}).get(level), 50)


def _burst_wall(res: Results, attr: str) -> Getter:
    return lambda key: percentile([getattr(b, attr) for b in res.burst.get(key, [])], 50)


def _rss_mib(res: Results, q: float | None) -> Getter:
    """The largest (q None) or the q-th percentile of the ADDs' peak RSS, in MiB."""
    def get(key: str) -> float | None:
        values = res.rss_kib.get(key, [])
        found = (max(values) if values else None) if q is None else percentile(values, q)
        return None if found is None else found / 1024
    return get


def _version(prof: Profile) -> Getter:
    return lambda key: _ms(prof.version.get(key), 50)


def _rows(run: Run) -> list[tuple[str, Getter, int]]:
    res = run.results
    rows: list[tuple[str, Getter, int]] = [
        (f"{verb} p{q} (ms)", _latency(res, verb, q), 1)
        for verb in ("ADD", "CHECK", "DEL") for q in (50, 90, 99)
    ]
    rows.append(("peak RSS of an ADD (MiB, largest)", _rss_mib(res, None), 1))
    rows.append(("peak RSS of an ADD, p50 (MiB)", _rss_mib(res, 50), 1))
    size = next((b[0].size for b in res.burst.values() if b), 0)
    if size:
        rows.append((f"burst: {size} ADDs at once, wall (s)", _burst_wall(res, "add_wall"), 2))
        rows.append((f"burst: {size} DELs at once, wall (s)", _burst_wall(res, "del_wall"), 2))
    for level in sorted({lvl for per in res.growth.values() for lvl in per}):
        rows.append((f"growth: ADD p50 with {level} pods in the block (ms)", _growth(res, level), 1))
    if run.profile and run.profile.version:
        rows.append(("VERSION p50: start, no handler (ms)", _version(run.profile), 1))
    return rows


def figures_table(run: Run) -> list[str]:
    ours = [k for k in run.keys if k != REFERENCE]
    has_ref = REFERENCE in run.keys
    head = ["figure"]
    for key in ours:
        head += [LABELS[key]] + (["x ptp"] if has_ref else [])
    if has_ref:
        head.append(LABELS[REFERENCE])
    lines = ["| " + " | ".join(head) + " |", "|---" + "|--:" * (len(head) - 1) + "|"]
    for label, get, digits in _rows(run):
        ref = get(REFERENCE) if has_ref else None
        cells = [label]
        for key in ours:
            value = get(key)
            cells.append(_fmt(value, digits))
            if has_ref:
                cells.append(_times(ratio(value, ref)))
        if has_ref:
            cells.append(_fmt(ref, digits))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _target_values(run: Run, key: str) -> dict[str, float | None]:
    lat = run.results.latency
    ref = lat.get(REFERENCE, {})
    rss = run.results.rss_kib.get(key)
    burst_add = _burst_wall(run.results, "add_wall")
    burst_del = _burst_wall(run.results, "del_wall")
    return {
        "add": ratio(_ms(lat.get(key, {}).get("ADD"), 50), _ms(ref.get("ADD"), 50)),
        "del": ratio(_ms(lat.get(key, {}).get("DEL"), 50), _ms(ref.get("DEL"), 50)),
        "rss": max(rss) / 1024 if rss else None,
        "burst_add": ratio(burst_add(key), burst_add(REFERENCE)),
        "burst_del": ratio(burst_del(key), burst_del(REFERENCE)),
    }


def targets_table(run: Run, title: str, keys: list[str],
                  targets: tuple[tuple[str, float, str, str], ...]) -> list[str]:
    head = [title, "limit"] + [c for k in keys for c in (LABELS[k], "")]
    lines = ["| " + " | ".join(head) + " |", "|---|--:" + "|--:|:-:" * len(keys) + "|"]
    values = {k: _target_values(run, k) for k in keys}
    for label, limit, unit, which in targets:
        cells = [label, f"<= {limit:g}{'x' if unit == 'x' else ' ' + unit}"]
        for key in keys:
            value = values[key][which]
            shown = _times(value) if unit == "x" else f"{_fmt(value)} {unit}"
            verdict = "n/a" if value is None else ("pass" if value <= limit else "**FAIL**")
            cells += [shown, verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def all_targets(run: Run) -> list[str]:
    cold = [k for k in run.keys if k not in (REFERENCE, "agent")]
    out: list[str] = []
    if cold:
        out += targets_table(run, "target (cold path)", cold, COLD_TARGETS)
    if "agent" in run.keys:
        out += ["", *targets_table(run, "target (agent)", ["agent"], AGENT_TARGETS)]
    return out


def burst_table(run: Run) -> list[str]:
    lines = ["| variant | round | ADDs failed | distinct addresses | DELs failed | "
             "left in store | routes left | verdict |", "|---|--:|--:|--:|--:|--:|--:|:-:|"]
    for key in run.keys:
        for i, b in enumerate(run.results.burst.get(key, [])):
            lines.append(
                f"| {LABELS[key]} | {i + 1} | {b.add_failures} | {b.distinct}/{b.size} | "
                f"{b.del_failures} | {len(b.store_left)} | {len(b.routes_left)} | "
                f"{'ok' if b.ok else '**FAIL**'} |")
    return lines


def profile_tables(prof: Profile, add_p50_ms: float | None) -> list[str]:
    start, exit_ = _ms(prof.start, 50), _ms(prof.exit, 50)
    buckets = prof.buckets_ms()
    rows = [("interpreter start (spawn to first line, with site and .pth files)", start)]
    small = sum(v for v in buckets.values() if v < SMALL_MS)
    rows += [(name, value) for name, value in buckets.items() if value >= SMALL_MS]
    rows.append((f"everything else (each under {SMALL_MS:g} ms)", small))
    rows.append(("exit (result written to process reaped)", exit_))
    total = sum(v for _, v in rows if v is not None)
    lines = [f"p50 of {len(prof.serve)} fresh processes spread over the latency rounds; import + "
             f"handler time split by the mean shares of as many pyinstrument runs of the same ADD. "
             f"Sum {total:.1f} ms; ADD p50 in the table above {_fmt(add_p50_ms)} ms.", "",
             "| where | ms | share |", "|---|--:|--:|"]
    for name, value in rows:
        share = f"{100 * value / total:.0f}%" if value is not None and total else "n/a"
        lines.append(f"| {name} | {_fmt(value)} | {share} |")
    if prof.import_ms:
        lines += ["", "Import cost per package (`python -X importtime` of one ADD, self times summed; "
                  "importtime itself slows imports down):", "", "| package | ms |", "|---|--:|"]
        for name, value in sorted(prof.import_ms.items(), key=lambda kv: -kv[1]):
            if value >= 0.5:
                lines.append(f"| {name} | {value:.1f} |")
    return lines


def render(run: Run) -> str:
    out = ["# calico-py benchmark", "", *(f"- {line}" for line in run.header), f"- {run.settings}", ""]
    out += ["## Figures", "", "Whole process as a runtime sees it (spawn with env + stdin, wait), "
            "from inside the node's network namespace; variants interleaved.", ""]
    out += figures_table(run)
    out += ["", "x ptp: the figure divided by ptp + host-local's. Peak RSS is wait4's ru_maxrss: the "
            "largest of the process and the children it reaped (for ptp, the larger of ptp and "
            "host-local, not their sum). Burst: wall time from the first start to the last exit, "
            "median of the rounds."]
    if REFERENCE in run.keys and len(run.keys) > 1:
        out += ["", "## Targets", "", *all_targets(run)]
    if run.results.burst:
        out += ["", "## Burst checks", "", *burst_table(run)]
    if run.profile and run.profile.serve:
        add_p50 = _ms(run.results.latency.get("venv", {}).get("ADD"), 50)
        out += ["", "## Where the time goes in one ADD (calico-py from the venv)", ""]
        out += profile_tables(run.profile, add_p50)
    failures = {k: v for k, v in run.results.failures.items() if v}
    notes = (run.profile.failures if run.profile else [])
    if failures or notes:
        out += ["", "## Failures", ""]
        for key, items in failures.items():
            out += [f"- {LABELS[key]}: {len(items)} failed call(s); first: `{items[0]}`"]
        out += [f"- profile: `{item}`" for item in notes[:3]]
    if run.plot_name:
        out += ["", f"![latency distributions]({run.plot_name})"]
    return "\n".join(out) + "\n"
