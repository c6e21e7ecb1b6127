"""calico-py-ipam as the IPAM plugin of Debian's reference ptp plugin."""

import ipaddress
import json

import pytest

from tests.ipam.helpers import BLOCK, blackholes, records
from tests.netns import run_cni

pytestmark = pytest.mark.netns


def test_ptp_pods_get_block_addresses_and_the_node_reaches_them(
        node, reference_plugins, cni_path, tmp_path):
    ptp = str(reference_plugins / "ptp")
    # ptp puts the gateway on its host veth and routes the pod through it:
    # a link-local gateway (as Calico uses) keeps every block address for pods.
    conf = {"cniVersion": "1.0.0", "name": "ptpnet", "type": "ptp",
            "ipam": {"type": "calico-py-ipam", "subnet": str(BLOCK), "gateway": "169.254.1.1",
                     "dataDir": str(tmp_path)}}
    stdin = json.dumps(conf)

    def env(command, pod, n):
        return {"CNI_COMMAND": command, "CNI_CONTAINERID": f"ptp{n}", "CNI_NETNS": pod,
                "CNI_IFNAME": "eth0", "CNI_PATH": cni_path}

    pods = [node.add_pod(), node.add_pod()]
    results = []
    for n, pod in enumerate(pods):
        code, out, err = run_cni(node, ptp, env("ADD", pod, n), stdin)
        assert code == 0, (out, err)
        results.append(out)
    addresses = [ipaddress.ip_interface(r["ips"][0]["address"]) for r in results]
    assert addresses[0] != addresses[1]
    assert all(a.ip in BLOCK and a.network == BLOCK for a in addresses)
    assert len(records({"name": "ptpnet", "ipam": {"dataDir": str(tmp_path)}})) == 2
    assert len(blackholes(node)) == 1

    for address in addresses:
        node.exec("ping", "-c1", "-W2", str(address.ip))

    for n, pod in enumerate(pods):
        check = json.dumps({**conf, "prevResult": results[n]})
        code, out, err = run_cni(node, ptp, env("CHECK", pod, n), check)
        assert code == 0, (out, err)

    for n, pod in enumerate(pods):
        code, out, err = run_cni(node, ptp, env("DEL", pod, n), stdin)
        assert code == 0, (out, err)
    assert records({"name": "ptpnet", "ipam": {"dataDir": str(tmp_path)}}) == {}
    assert blackholes(node) == []
    assert [link["ifname"] for link in node.links()] == ["lo", "eth0"]
