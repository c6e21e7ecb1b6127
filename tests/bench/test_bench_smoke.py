"""The benchmark command runs end to end with tiny sizes and writes its table and plot.

Only that it works is checked here, never how fast anything is: the figures
of a loaded test machine mean nothing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
TINY = ["--pods", "3", "--burst", "4", "--burst-rounds", "1", "--growth-levels", "0,3",
        "--growth-samples", "1", "--profile-runs", "1", "--version-runs", "1"]


def _variants() -> list[str]:
    """The installed executable too when the suite runs against one (CALICO_PY_BIN_DIR)."""
    installed = os.environ.get("CALICO_PY_BIN_DIR")
    if installed and Path(installed).resolve() != Path(sys.executable).parent.resolve():
        return ["--variants", "agent,frozen,venv,ptp", "--installed", installed]
    return ["--variants", "venv,ptp"]


def test_bench_writes_table_and_plot(root, reference_plugins, tmp_path):
    missing = [m for m in ("matplotlib", "pyinstrument") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: pip install -e .[bench]")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *TINY, *_variants(), "--out", str(tmp_path), "--name", "smoke"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "smoke.md").read_text()
    assert table in proc.stdout
    for heading in ("## Figures", "## Targets", "## Burst checks", "## Where the time goes"):
        assert heading in table
    assert "| ADD p50 (ms) |" in table and "| DEL p99 (ms) |" in table
    assert "## Failures" not in table, table
    assert "**FAIL** |\n" not in table.split("## Burst checks")[1].split("##")[0], table
    assert (tmp_path / "smoke.png").read_bytes().startswith(b"\x89PNG")
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "cpb" not in leftover


@pytest.mark.parametrize("datastore", ["etcd", "kubernetes"])
def test_cluster_bench_runs_on_either_datastore(root, tmp_path, datastore):
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "cluster", "--datastore", datastore, "--vxlan", "2",
         "--bgp", "", "--joins", "1", "--idle", "2", "--settle", "0.5", "--timeout", "60",
         "--out", str(tmp_path), "--no-plot"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "cluster.md").read_text()
    assert ("VXLAN (Kubernetes)" if datastore == "kubernetes" else "| VXLAN |") in table, table
    assert "datastore writes/min idle" in table
