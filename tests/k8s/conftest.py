"""The real cluster's fixtures: the images every node imports, and the cluster with the
plugin installed by `kubectl apply -f conf/kubernetes/calico-py.yaml`.

The plugin's image is built from the session's frozen build by the project's own
script (scripts/build_image.py), as an operator would build it; the pause and
workload images are busybox, made offline (no registry is reachable).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from .conformance import deploy_dns, e2e_images, pods_routed_from_control_plane
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
def e2e_image_tars(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], str]:
    """The images the upstream e2e specs run, and CoreDNS's name (scripts/build_e2e_images.py)."""
    try:
        return e2e_images(tmp_path_factory.mktemp("e2e-images"))
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


@pytest.fixture(scope="module")
def e2e_kube(request: pytest.FixtureRequest, k8s_images: list[Path],
             e2e_image_tars: tuple[list[Path], str], k8s_baseline: MachineState,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The cluster with the e2e images on every node, the pods routed from the control
    plane's network, and CoreDNS running."""
    datastore, mode = request.param
    tars, coredns = e2e_image_tars
    workdir = tmp_path_factory.mktemp(f"e2e-{datastore}-{mode}")
    with ExitStack() as stack:
        installed = stack.enter_context(
            installed_cluster(workdir, [*k8s_images, *tars], datastore, mode))
        stack.enter_context(pods_routed_from_control_plane(installed))
        deploy_dns(installed.cluster, coredns)
        yield installed
