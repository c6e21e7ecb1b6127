"""conf/kubernetes/calico-py.yaml: what one `kubectl apply` installs, checked against the code
that reads its configs and the paths the code writes."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml

from cni_calico_py import __version__
from cni_calico_py.agent.framing import DEFAULT_SOCKET
from cni_calico_py.cluster import config as cluster_config
from cni_calico_py.config import DEFAULT_MTU_FILE, validate_netconf
from cni_calico_py.core import attachment_lock, repairs, verdicts
from cni_calico_py.core.logs import FALLBACK_LOG_DIR
from cni_calico_py.install import command, kubeconfig, network
from ipam import block_stores
from ipam.node_state import DEFAULT_STATE_FILE
from ipam.validation import DEFAULT_DATA_DIR, parse_static
from tests.kube import CRD_KINDS, MANIFEST, RBAC_KINDS, manifest_documents

DOCS = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
DAEMONSET = next(d for d in DOCS if d["kind"] == "DaemonSet")
POD = DAEMONSET["spec"]["template"]["spec"]
CONTAINERS = {c["name"]: c for c in POD["containers"]}
INIT = {c["name"]: c for c in POD["initContainers"]}
CONFIG = next(d for d in DOCS if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "calico-py-config")
HOST_PATHS = {v["name"]: v["hostPath"]["path"] for v in POD["volumes"] if "hostPath" in v}
NAMESPACE = "calico-py-system"


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Mount path -> the mount, for a container."""
    return {m["mountPath"]: m for m in container["volumeMounts"]}


def test_every_kind_is_there_once_in_its_namespace():
    kinds = [d["kind"] for d in DOCS]
    assert sorted(kinds) == sorted(["Namespace", *["CustomResourceDefinition"] * 5, "ServiceAccount",
                                    "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                                    "ConfigMap", "DaemonSet"])
    assert next(d for d in DOCS if d["kind"] == "Namespace")["metadata"]["name"] == NAMESPACE
    for doc in DOCS:
        if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding", "ConfigMap", "DaemonSet"):
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]
    # The tests' own control planes take the CRDs and the RBAC from it by kind.
    assert len(manifest_documents(CRD_KINDS)) == 5
    assert {d["kind"] for d in manifest_documents(RBAC_KINDS)} == RBAC_KINDS
    assert {d["kind"] for d in DOCS} == CRD_KINDS | RBAC_KINDS | {"ConfigMap", "DaemonSet"}


def test_the_roles_name_every_verb_and_resource():
    for doc in DOCS:
        for rule in doc.get("rules", []):
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule


def test_the_image_is_this_version():
    for container in [*POD["initContainers"], *POD["containers"]]:
        assert container["image"] == f"calico-py:{__version__}", container["name"]
        assert container["imagePullPolicy"] == "IfNotPresent"


def test_the_pod_runs_on_every_node_in_the_nodes_namespaces():
    assert DAEMONSET["metadata"]["name"] == "calico-py-node"
    assert (POD["hostNetwork"], POD["hostPID"], POD["dnsPolicy"]) == (True, True,
                                                                      "ClusterFirstWithHostNet")
    assert POD["priorityClassName"] == "system-node-critical"
    assert POD["tolerations"] == [{"operator": "Exists"}]
    assert POD["serviceAccountName"] == "calico-py-node"
    assert POD["terminationGracePeriodSeconds"] <= 30
    assert DAEMONSET["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                                   "rollingUpdate": {"maxUnavailable": 1}}
    assert set(CONTAINERS) == {"agent", "node"} and set(INIT) == {"install-cni"}


def test_every_mount_names_a_volume_and_host_paths_keep_their_path():
    volumes = {v["name"] for v in POD["volumes"]}
    for container in [*POD["initContainers"], *POD["containers"]]:
        assert {m["name"] for m in container["volumeMounts"]} <= volumes, container["name"]
    for name in ("agent", "node"):
        for mount in CONTAINERS[name]["volumeMounts"]:
            if mount["name"] in HOST_PATHS:
                assert mount["mountPath"] == HOST_PATHS[mount["name"]], (name, mount)
        assert set(HOST_PATHS.values()) == {m["mountPath"] for m in CONTAINERS[name]["volumeMounts"]
                                            if m["name"] in HOST_PATHS}
        found = mounts(CONTAINERS[name])
        assert found["/var/run/netns"]["mountPropagation"] == "HostToContainer"
        assert found["/lib/modules"]["readOnly"] is True
        # The node's CNI directories are install-cni's to write, not theirs.
        assert found["/opt/cni/bin"]["readOnly"] is True
        assert found["/etc/cni/net.d"]["readOnly"] is True
        assert CONTAINERS[name]["securityContext"]["privileged"] is True


@pytest.mark.parametrize("name", ["agent", "node"])
def test_every_path_the_code_uses_is_a_host_path_of_the_pod(name):
    node_yaml = yaml.safe_load(CONFIG["data"]["node.yaml"])
    plugin = json.loads(CONFIG["data"]["cni_network_config"])["plugins"][0]
    used = [DEFAULT_SOCKET, verdicts.DEFAULT_DIRECTORY, repairs.DEFAULT_PATH,
            attachment_lock.DEFAULT_DIRECTORY, block_stores.DEFAULT_DIRECTORY, DEFAULT_DATA_DIR,
            DEFAULT_STATE_FILE, DEFAULT_MTU_FILE, FALLBACK_LOG_DIR, plugin["log_file_path"],
            plugin["mtu_file_path"], plugin["ipam"]["nodeStateFile"], node_yaml["kubeconfig"],
            node_yaml["state_file"], node_yaml["cni_conflist"], node_yaml["bird_dir"],
            node_yaml["mtu_file"]]
    mounted = [m["mountPath"] for m in CONTAINERS[name]["volumeMounts"]
               if m["name"] in HOST_PATHS]
    for path in used:
        assert any(path == m or path.startswith(m + "/") for m in mounted), path


def test_install_cni_gets_the_conflist_and_the_nodes_cni_directories():
    install = INIT["install-cni"]
    assert install["command"][-1] == "install-cni"
    env = {e["name"]: e for e in install.get("env", [])}
    assert env["CNI_NETWORK_CONFIG"]["valueFrom"]["configMapKeyRef"] == {
        "name": "calico-py-config", "key": "cni_network_config"}
    found = mounts(install)
    assert HOST_PATHS[found[command.DEFAULT_BIN_DIR]["name"]] == "/opt/cni/bin"
    assert HOST_PATHS[found[command.DEFAULT_CONF_DIR]["name"]] == command.DEFAULT_HOST_CONF_DIR


def test_every_container_takes_the_optional_settings():
    for container in [*POD["initContainers"], *POD["containers"]]:
        assert {"configMapRef": {"name": "calico-py-settings", "optional": True}} in container["envFrom"]


def test_the_node_daemon_gets_its_config_and_its_node_name():
    node = CONTAINERS["node"]
    assert node["command"][-4:] == ["node", "run", "--config", "/etc/calico-py/node.yaml"]
    volume = mounts(node)["/etc/calico-py"]["name"]
    source = next(v for v in POD["volumes"] if v["name"] == volume)["configMap"]
    assert source["name"] == "calico-py-config"
    assert source["items"] == [{"key": "node.yaml", "path": "node.yaml"}]
    env = {e["name"]: e for e in node["env"]}
    assert env["NODENAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert CONTAINERS["agent"]["command"][-1] == "agent"


def test_the_conflist_is_one_the_plugin_and_install_cni_accept():
    text = CONFIG["data"]["cni_network_config"]
    conflist = json.loads(network.render(text, "/etc/cni/net.d/calico-py-kubeconfig", "the ConfigMap"))
    ours = {**conflist["plugins"][0], "name": conflist["name"], "cniVersion": conflist["cniVersion"]}
    assert validate_netconf(ours)["type"] == "calico-py"
    ipam = parse_static(ours)
    assert ipam.node_state_file is not None and not ipam.range_sets  # cluster mode
    assert [p["type"] for p in conflist["plugins"]] == ["calico-py", "portmap"]
    assert conflist["plugins"][1]["capabilities"] == {"portMappings": True}


def test_the_node_config_is_one_the_daemon_accepts_and_agrees_with_the_conflist(tmp_path):
    path = tmp_path / "node.yaml"
    path.write_text(CONFIG["data"]["node.yaml"])
    conf = cluster_config.load(str(path), {"NODENAME": "node-a"})
    plugin = json.loads(CONFIG["data"]["cni_network_config"])["plugins"][0]
    assert (conf.datastore, str(conf.pool), conf.encapsulation) == ("kubernetes", "192.168.0.0/16", "Off")
    assert conf.kubeconfig == os.path.join(command.DEFAULT_HOST_CONF_DIR, kubeconfig.FILENAME)
    assert conf.state_file == plugin["ipam"]["nodeStateFile"]
    assert conf.mtu_file == plugin["mtu_file_path"]
    assert conf.cni_conflist == os.path.join(command.DEFAULT_HOST_CONF_DIR, command.DEFAULT_CONF_NAME)
    assert conf.nodename == "node-a"
    assert CONTAINERS["node"]["livenessProbe"]["tcpSocket"] == {"host": "127.0.0.1",
                                                                "port": conf.metrics_port}


@pytest.mark.parametrize("settings, expected", [
    ({"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "http://10.1.2.3:2379"},
     {"datastore": "etcdv3", "etcd_endpoints": ["http://10.1.2.3:2379"]}),
    ({"CALICO_IPV4POOL_VXLAN": "Always", "CALICO_IPV4POOL_CIDR": "10.244.0.0/16"},
     {"encapsulation": "VXLAN", "pool": "10.244.0.0/16"}),
])
def test_the_settings_configmap_switches_without_editing_the_manifest(tmp_path, settings, expected):
    path = tmp_path / "node.yaml"
    path.write_text(CONFIG["data"]["node.yaml"])
    conf = cluster_config.load(str(path), {"NODENAME": "node-a", **settings})
    assert {key: conf.model_dump(mode="json")[key] for key in expected} == expected
