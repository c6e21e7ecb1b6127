"""The benchmark command: `sudo <venv>/bin/python -m bench [options]` from the repository root.

It makes a node network namespace of its own, enters it, runs every phase
with the variants interleaved, removes everything (also on failure or
Ctrl-C), then writes <out>/<name>.md and <name>.png and prints the table.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from . import agent, breakdown, machine, node, plot, report, spawn, variants
from .measure import Bench

REPO = Path(__file__).resolve().parent.parent
KEYS = variants.ORDER


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--pods", type=int, default=60, help="ADD/CHECK/DEL rounds per variant")
    p.add_argument("--burst", type=int, default=64, help="ADDs (then DELs) started at once")
    p.add_argument("--burst-rounds", type=int, default=1, help="bursts per variant")
    p.add_argument("--growth-levels", default="0,32,63", help="pods already in the block")
    p.add_argument("--growth-samples", type=int, default=10, help="ADDs measured per level")
    p.add_argument("--profile-runs", type=int, default=5,
                   help="fresh processes timed (and as many profiled) for the ADD breakdown; 0: none")
    p.add_argument("--version-runs", type=int, default=10, help="VERSION calls per variant")
    p.add_argument("--variants", default=",".join(KEYS), help=f"subset of {','.join(KEYS)}")
    p.add_argument("--installed", type=Path,
                   help="directory holding the installed calico-py (default: make build + make install)")
    p.add_argument("--ipam", default="calico-py-ipam", help="ipam.type for calico-py")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="output directory")
    p.add_argument("--name", default="latest", help="file name (without suffix) of the outputs")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    return p


class _Progress:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, what: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {what}", file=sys.stderr, flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _variants(keys: list[str], args: argparse.Namespace, work: Path, say: _Progress) -> list[
        variants.Variant]:
    made = []
    installed: Path | None = args.installed
    for key in keys:
        if key == "ptp":
            made.append(variants.ptp(work))
        elif key == "venv":
            made.append(variants.ours("venv", variants.venv_bin_dir(), args.ipam, work))
        else:
            if installed is None:
                if not (REPO / "Makefile").exists():
                    raise SystemExit("no Makefile to build the executable: pass --installed DIR "
                                     "or leave 'agent' and 'frozen' out of --variants")
                say("make build && make install (PyInstaller)")
                installed = variants.build_installed(REPO, work)
            if not (installed / "calico-py").exists():
                raise SystemExit(f"{installed}/calico-py does not exist")
            made.append(variants.ours(key, installed.resolve(), args.ipam, work))
    return made


def _levels(text: str, burst: int) -> list[int]:
    levels = sorted({int(x) for x in text.split(",") if x.strip()})
    if any(not 0 <= level < variants.BLOCK_SIZE for level in levels) or burst > variants.BLOCK_SIZE:
        raise SystemExit(f"a block holds {variants.BLOCK_SIZE} pods: growth levels must be 0 to "
                         f"{variants.BLOCK_SIZE - 1} (one more pod is added) and --burst at most "
                         f"{variants.BLOCK_SIZE}")
    return levels


def _measure(args: argparse.Namespace, chosen: list[variants.Variant], say: _Progress) -> tuple[
        Bench, breakdown.Profile]:
    levels = _levels(args.growth_levels, args.burst)
    pool = max(args.burst, max(levels, default=0) + 1, 1)
    profile = breakdown.Profile()
    with node.entered_node() as the_node, agent.running(chosen, say):
        try:
            say(f"node {the_node.name}: making {pool} pod namespaces per variant")
            pools = {v.key: the_node.add_pods(pool) for v in chosen}
            bench = Bench(chosen, pools)
            venv = next((v for v in chosen if v.key == "venv"), None)
            say(f"VERSION x{args.version_runs}")
            breakdown.version_costs(chosen, args.version_runs, profile)
            between = None
            if venv is not None and args.profile_runs > 0:
                between = breakdown.spread(bench, venv, args.profile_runs, args.pods, profile)
            say(f"latency: {args.pods} x ADD, CHECK, DEL"
                + (f"; among them {args.profile_runs} timed + profiled ADDs" if between else ""))
            bench.latency(args.pods, between)
            if venv is not None and args.profile_runs > 0:
                say("python -X importtime of one ADD")
                breakdown.importtime(bench, venv, profile)
            if levels and args.growth_samples > 0:
                say(f"growth: {args.growth_samples} ADDs at {levels} pods")
                bench.growth(levels, args.growth_samples)
            if args.burst > 0 and args.burst_rounds > 0:
                say(f"burst: {args.burst} ADDs then DELs at once, x{args.burst_rounds}")
                bench.burst(args.burst, args.burst_rounds)
            leftover = [n for n in node.link_names() if n not in ("lo", "eth0")]
            if leftover:
                bench.results.failures.setdefault(chosen[0].key, []).append(
                    f"links left on the node after all phases: {', '.join(leftover[:10])}")
        finally:
            spawn.kill_all()
            say("removing the namespaces")
    return bench, profile


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("interrupted: the namespaces and temporary files are removed", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    keys = [k.strip() for k in args.variants.split(",") if k.strip()]
    unknown = set(keys) - set(KEYS)
    if unknown or not keys:
        raise SystemExit(f"--variants: unknown {sorted(unknown)}; choose from {','.join(KEYS)}")
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark creates network namespaces")
    if "ptp" in keys and not (variants.REFERENCE_DIR / "ptp").exists():
        raise SystemExit("Debian's containernetworking-plugins are not installed (/usr/lib/cni/ptp)")
    # SIGINT too: a shell starts background jobs with it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    say = _Progress()
    title = machine.describe(REPO)  # the code as it is when the run starts
    keys = [k for k in KEYS if k in keys]
    with tempfile.TemporaryDirectory(prefix="calico-py-bench-") as tmp:
        work = Path(tmp)
        chosen = _variants(keys, args, work, say)
        bench, profile = _measure(args, chosen, say)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_name = None
    if not args.no_plot:
        plot_name = f"{args.name}.png"
        plot.write(bench.results, keys, args.out / plot_name, title[0])
    command = shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    settings = (f"`{command}`: "
                f"calico-py with ipam.type {args.ipam}; {args.pods} pods per verb, burst {args.burst} "
                f"x{args.burst_rounds}, growth {args.growth_levels} x{args.growth_samples}; "
                f"{time.monotonic() - say.t0:.0f} s")
    text = report.render(report.Run(title, settings, keys, bench.results, profile, plot_name))
    (args.out / f"{args.name}.md").write_text(text)
    print(text)
    say(f"wrote {args.out / (args.name + '.md')}" + (f" and {plot_name}" if plot_name else ""))
    return 0
