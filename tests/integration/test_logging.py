"""The CNI log: a pod's requests can be followed by its name."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.cni_calls import Pod, netconf
from tests.netns import Node

pytestmark = pytest.mark.netns


def test_add_and_del_log_the_pod_and_its_sandbox(node: Node, plugin_exe: str, cni_path: str,
                                                   tmp_path: Path) -> None:
    log_file = tmp_path / "cni.log"
    sandbox = f"s{uuid.uuid4().hex[:12]}"
    pod = Pod(node=node, exe=plugin_exe, cni_path=cni_path,
              conf=netconf(tmp_path, log_level="info", log_file_path=str(log_file)),
              netns=node.add_pod(), container_id=sandbox,
              args=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;"
                   f"K8S_POD_INFRA_CONTAINER_ID={sandbox};K8S_POD_UID=u-1")
    pod.add()
    assert pod.delete()[0] == 0
    lines = [line for line in log_file.read_text().splitlines() if "pod=shop/web-0" in line]
    verbs = [line.split(": ", 1)[1].split()[0] for line in lines]
    assert verbs == ["ADD", "DEL"], lines
    assert all(f"sandbox={sandbox}" in line and "uid=u-1" in line and " INFO " in line
               for line in lines)


def test_debug_log_records_every_cni_arg_and_capability(node: Node, plugin_exe: str, cni_path: str,
                                                         tmp_path: Path) -> None:
    log_file = tmp_path / "cni.log"
    conf = netconf(tmp_path, log_level="debug", log_file_path=str(log_file))
    conf["runtimeConfig"] = {"portMappings": [], "dns": {"servers": ["10.96.0.10"]}}
    pod = Pod(node=node, exe=plugin_exe, cni_path=cni_path, conf=conf,
              netns=node.add_pod(), container_id=f"s{uuid.uuid4().hex[:12]}",
              args="K8S_POD_UID=u-2;IgnoreUnknown=1;K8S_POD_NAME=web-1;K8S_POD_NAMESPACE=shop")
    pod.add()
    assert pod.delete()[0] == 0
    lines = [line for line in log_file.read_text().splitlines() if " CNI_ARGS " in line]
    assert [line.split(": ", 1)[1].split()[0] for line in lines] == ["ADD", "DEL"], lines
    assert all("IgnoreUnknown=1;K8S_POD_NAME=web-1;K8S_POD_NAMESPACE=shop;K8S_POD_UID=u-2" in line
               and "capabilities=dns,portMappings" in line and " DEBUG " in line for line in lines)


def _pods(node: Node, plugin_exe: str, cni_path: str, conf: dict[str, Any],
          count: int) -> list[Pod]:
    return [Pod(node=node, exe=plugin_exe, cni_path=cni_path, conf=conf, netns=path,
                container_id=f"r{uuid.uuid4().hex[:12]}") for path in node.add_pods(count)]


def test_a_full_log_is_rotated_once_by_concurrent_requests(node: Node, plugin_exe: str,
                                                            cni_path: str, tmp_path: Path) -> None:
    log_file = tmp_path / "cni.log"
    filler = "x" * 1023 + "\n"
    log_file.write_text(filler * 1024)  # 1 MiB: full at log_file_max_size 1
    conf = netconf(tmp_path, log_level="info", log_file_path=str(log_file),
                   log_file_max_size=1, log_file_max_count=2)
    pods = _pods(node, plugin_exe, cni_path, conf, 6)
    with ThreadPoolExecutor(len(pods)) as pool:
        added = list(pool.map(lambda pod: pod.call("ADD")[0], pods))
    assert added == [0] * len(pods)
    rotated = Path(f"{log_file}.1")
    # A request that opened the log just before the rotation may add its lines there.
    assert rotated.read_text().startswith(filler * 1024)
    assert not Path(f"{log_file}.2").exists()
    fresh = log_file.read_text()
    assert all(f"ADD container={pod.container_id}" in fresh for pod in pods), fresh
    for pod in pods:
        assert pod.delete()[0] == 0


@pytest.mark.parametrize("key, value", [("log_file_max_size", 0), ("log_file_max_count", "3")])
def test_bad_rotation_limits_are_refused(node: Node, plugin_exe: str, cni_path: str,
                                         tmp_path: Path, key: str, value: Any) -> None:
    conf = netconf(tmp_path, log_file_path=str(tmp_path / "cni.log"), **{key: value})
    (pod,) = _pods(node, plugin_exe, cni_path, conf, 1)
    code, error, _ = pod.call("ADD")
    assert code != 0 and error["code"] == 7 and key in error["msg"], error
