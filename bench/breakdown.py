"""Where the time of one ADD goes, for the code run from the virtualenv.

- start: spawn of the interpreter until the first line of the script runs;
- import / handler / exit: timed inside a fresh interpreter (add_profile.py)
  with no profiler attached; exit is from the output written to the reap;
- the import + handler time is then split into buckets by the shares of a
  pyinstrument run of the same ADD (profiled runs are slower, so only their
  shares are used);
- `-X importtime` of one ADD gives the import cost per package.

The timed and profiled ADDs are spread over the latency rounds (see
`spread`), so they meet the same machine noise as the table's ADD p50.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cni_calico_py.agent.stats import percentile

from . import spawn
from .measure import Bench, Pod
from .variants import Variant

# Run with -P: the script's directory (this package) must not shadow anything.
CHILD = Path(__file__).with_name("add_profile.py")
VERSION_STDIN = b'{"cniVersion": "1.0.0"}'


@dataclass
class Profile:
    start: list[float] = field(default_factory=list)
    imports: list[float] = field(default_factory=list)
    serve: list[float] = field(default_factory=list)
    exit: list[float] = field(default_factory=list)
    # Each profiled run's buckets as fractions of that run, summed over the runs.
    profiled: dict[str, float] = field(default_factory=dict)
    import_ms: dict[str, float] = field(default_factory=dict)
    version: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def buckets_ms(self) -> dict[str, float]:
        """The mean shares applied to the unprofiled import + handler time (p50s), in ms."""
        total = (percentile(self.imports, 50) or 0.0) + (percentile(self.serve, 50) or 0.0)
        runs = sum(self.profiled.values())
        if not runs:
            return {}
        ranked = sorted(self.profiled.items(), key=lambda kv: -kv[1])
        return {k: v / runs * total * 1000 for k, v in ranked}


def version_costs(variants: Sequence[Variant], runs: int, into: Profile) -> None:
    """VERSION (start + the protocol layer, no handler) and a bare interpreter start."""
    python = [sys.executable, "-c", "pass"]
    for _ in range(runs):
        for variant in variants:
            env = {**variant.env("VERSION", "", ""), "CNI_COMMAND": "VERSION"}
            outcome = spawn.run([variant.exe], env, VERSION_STDIN)
            if outcome.ok:
                into.version.setdefault(variant.key, []).append(outcome.seconds)
        outcome = spawn.run(python, {"PATH": "/usr/bin:/bin"})
        into.version.setdefault("python -c pass", []).append(outcome.seconds)


def _child_add(bench: Bench, variant: Variant, argv: list[str], extra_env: dict[str, str]) -> tuple[
        spawn.Outcome, Pod]:
    pod = bench.pod(variant, 0)
    env = {**variant.env("ADD", pod.container_id, pod.netns), **extra_env}
    return spawn.run(argv, env, variant.stdin()), pod


def phase_run(bench: Bench, variant: Variant, profile: bool, into: Profile) -> None:
    """One ADD in a fresh interpreter, timed (profile False) or profiled; then its DEL."""
    env = {"BENCH_PROFILE": "1" if profile else "0"}
    outcome, pod = _child_add(bench, variant, [sys.executable, "-P", str(CHILD)], env)
    lines = outcome.stdout.decode(errors="replace").splitlines()
    try:
        report, done = json.loads(lines[0]), json.loads(lines[1])
    except (IndexError, ValueError):
        into.failures.append(f"ADD in add_profile.py: rc={outcome.rc} "
                             f"{outcome.stderr.decode(errors='replace')[-300:]}")
        bench.call(pod, "DEL")
        return
    pod.result = report["result"] if report["rc"] == 0 else None
    if report["rc"] != 0:
        into.failures.append(f"ADD in add_profile.py: {json.dumps(report['result'])[:300]}")
    elif profile:
        whole = sum(report["buckets"].values()) or 1.0
        for key, value in report["buckets"].items():
            into.profiled[key] = into.profiled.get(key, 0.0) + value / whole
    else:
        into.start.append(report["t_main"] - outcome.started)
        into.imports.append(report["import"])
        into.serve.append(report["serve"])
        into.exit.append(outcome.ended - done["t_done"])
    bench.call(pod, "DEL")


def spread(bench: Bench, variant: Variant, runs: int, rounds: int, into: Profile) -> Callable[[int], None]:
    """A `between` for Bench.latency: `runs` timed and profiled ADDs spread over `rounds`."""
    at = Counter(i * max(rounds, 1) // runs for i in range(runs)) if runs else Counter[int]()

    def between(turn: int) -> None:
        for _ in range(at[turn]):
            phase_run(bench, variant, False, into)
            phase_run(bench, variant, True, into)
    return between


def _group(module: str) -> str | None:
    """The package a module belongs to, or None for the standard library."""
    top = module.split(".", 1)[0]
    if top in ("pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection"):
        return "pydantic"
    if top in sys.stdlib_module_names or top.startswith("_"):
        return None
    return top


def import_costs(stderr: str) -> dict[str, float]:
    """`-X importtime` lines summed by package, in ms.

    A standard-library module counts for the package whose import pulled it in
    (the nearest non-stdlib importer above it); stdlib imported by nobody
    else's code is the interpreter's own start-up.
    """
    entries: list[tuple[int, int, str]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_text, _, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip(" "))) // 2
        entries.append((depth, int(self_text), name.strip()))
    costs: dict[str, float] = {}
    # importtime prints a module after everything it imported: read it backwards
    # and every module's importers are on the stack.
    stack: list[tuple[int, str | None]] = []
    for depth, self_us, name in reversed(entries):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        group = _group(name)
        if group is None:
            group = next((g for _, g in reversed(stack) if g is not None), None)
        stack.append((depth, group))
        key = group or "stdlib (interpreter start-up)"
        costs[key] = costs.get(key, 0.0) + self_us / 1000
    return costs


def importtime(bench: Bench, variant: Variant, into: Profile) -> None:
    """`python -X importtime` of one real ADD: import cost per package, in ms."""
    argv = [sys.executable, "-X", "importtime", variant.exe]
    outcome, pod = _child_add(bench, variant, argv, {})
    if outcome.ok:
        pod.result = json.loads(outcome.stdout)
    else:
        into.failures.append(f"importtime ADD: rc={outcome.rc} {outcome.stdout[:300]!r}")
    into.import_ms = import_costs(outcome.stderr.decode(errors="replace"))
    bench.call(pod, "DEL")
