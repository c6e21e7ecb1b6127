"""The real cluster's fixtures: the images every node imports, and the cluster with the
plugin installed by `kubectl apply -f conf/kubernetes/calico-py.yaml`.

The plugin's image is built from the session's frozen build by the project's own
script (scripts/build_image.py), as an operator would build it; the pause and
workload images are busybox, made offline (no registry is reachable).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .install import Installed, build_images, installed_cluster
from .leftovers import MachineState


@pytest.fixture(scope="session")
def k8s_images(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The pause, workload and plugin images, as docker archives for `ctr images import`."""
    try:
        return build_images(installed / "opt" / "cni" / "bin", tmp_path_factory.mktemp("k8s-images"))
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def k8s_baseline() -> MachineState:
    """The machine before any test cluster (test_nothing_left compares)."""
    return MachineState.read()


@pytest.fixture(scope="module")
def kube(request: pytest.FixtureRequest, k8s_images: list[Path], k8s_baseline: MachineState,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    datastore, mode = request.param
    workdir = tmp_path_factory.mktemp(f"k8s-{datastore}-{mode}")
    with installed_cluster(workdir, k8s_images, datastore, mode) as installed:
        yield installed
