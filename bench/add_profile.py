"""One ADD in a fresh interpreter, timed by phase and optionally profiled.

It runs the handler the executable runs (`cni_calico_py.main.serve`) and
leaves the way the executable leaves; only the agent is skipped (the cold path).

Run as a script by the venv's python, with the same environment and stdin a
runtime would give `calico-py`; prints one JSON line: the CNI result and the
timings. With BENCH_PROFILE=1 the import and the handler run under
pyinstrument and the samples are summed into a few buckets (see `bucket`).
"""

import time

T_MAIN = time.perf_counter()  # the first thing this interpreter does

import importlib  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

SITE = "/site-packages/"
PYDANTIC = {"pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection"}
# Buckets for time outside imports, by the outermost of our modules on the stack.
WORK_BUCKETS = (
    ("/ipam/", "IPAM (allocation, store, blackhole routes)"),
    ("/cni_calico_py/ipam_client.py", "IPAM (allocation, store, blackhole routes)"),
    ("/cni_calico_py/dataplane/", "netlink + sysctl (veth, addresses, routes)"),
    ("/cni_calico_py/config.py", "config + request parsing"),
    ("/cni_calico_py/request.py", "config + request parsing"),
    ("/cni_calico_py/versions.py", "config + request parsing"),
    ("/cni_calico_py/results.py", "result building"),
    ("/cni_calico_py/logs.py", "logging"),
)


def package_of(path: str) -> str:
    name = path.split(SITE, 1)[1].split("/", 1)[0]
    name = name.removesuffix(".py")
    return "pydantic" if name in PYDANTIC else name


def bucket(chain: list[tuple[str, str]]) -> str:
    """The bucket of one sample, from its stack (outermost first) of (function, file)."""
    files = [path or "" for _, path in chain]
    if any(path.startswith("<frozen importlib") for path in files):
        third = [p for p in files if SITE in p and "__editable__" not in p]
        return f"import {package_of(third[-1])}" if third else "import ours + stdlib"
    for marker, name in WORK_BUCKETS:
        if any(marker in path for path in files):
            return name
    return "other (dispatch, stdlib)"


def summarise(frame: Any, chain: list[tuple[str, str]], into: dict[str, float]) -> None:
    chain = [*chain, (frame.function, frame.file_path)]
    self_time = frame.time - sum(child.time for child in frame.children)
    if self_time > 0:
        key = bucket(chain)
        into[key] = into.get(key, 0.0) + self_time
    for child in frame.children:
        summarise(child, chain, into)


def main() -> None:
    stdin = sys.stdin.buffer.read()
    profiler: Any = None
    if os.environ.get("BENCH_PROFILE") == "1":
        from pyinstrument import Profiler

        profiler = Profiler(interval=float(os.environ.get("BENCH_INTERVAL", "0.0002")))
        profiler.start()
    t0 = time.perf_counter()
    # By name, so type-checking this script does not pull in the whole plugin.
    entry: Any = importlib.import_module("cni_calico_py.main")
    t1 = time.perf_counter()
    code, payload = entry.serve(os.environ, stdin, "calico-py")
    t2 = time.perf_counter()
    # Leave the way the executable does (cni_calico_py.entry), if it has a way of its own.
    finish = getattr(importlib.import_module("cni_calico_py.entry"), "_finish", None)
    buckets: dict[str, float] = {}
    if profiler is not None:
        session = profiler.stop()
        summarise(session.root_frame(), [], buckets)
    import json

    report = {"rc": code, "result": payload, "t_main": T_MAIN, "import": t1 - t0,
              "serve": t2 - t1, "buckets": buckets}
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    done = json.dumps({"t_done": time.perf_counter()}) + "\n"
    if finish is not None:
        finish(0, done)
    sys.stdout.write(done)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
