"""The contract calico-py relies on: ipam.plugin.execute(request, raw) run in-process.

It runs in a Python started inside the node netns, so its blackhole route
lands there and never in the machine's own namespace.
"""

import json
import sys
import textwrap

import pytest

from tests.ipam.helpers import netconf

pytestmark = pytest.mark.netns

SCRIPT = textwrap.dedent("""
    import json, sys
    from cni_calico_py.core.errors import CNIError
    from cni_calico_py.core.request import Request
    from ipam.plugin import execute

    raw = json.loads(sys.argv[1])
    out = {}
    request = Request(command="ADD", container_id="c1", netns="/ns", ifname="eth0",
                      args={"IP": "192.168.97.9"})
    result = execute(request, raw)
    ip = result.ips[0]
    out["add"] = [repr(ip.address), ip.interface, repr(ip.gateway), result.interfaces,
                  [str(r.dst) for r in result.routes], result.dns.is_empty()]
    for command in ("CHECK", "STATUS", "DEL"):
        out[command] = execute(Request(command=command, container_id="c1", netns="/ns",
                                       ifname="eth0"), raw)
    try:
        execute(Request(command="CHECK", container_id="c1", netns="/ns", ifname="eth0"), raw)
    except CNIError as err:
        out["check_after_del"] = err.code
    print(json.dumps(out))
""")


def test_execute_in_process(node, tmp_path):
    raw = netconf(tmp_path, routes=[{"dst": "10.0.0.0/8"}])
    proc = node.exec(sys.executable, "-c", SCRIPT, json.dumps(raw), check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["add"] == ["IPv4Interface('192.168.97.9/26')", None, "None", [], ["10.0.0.0/8"],
                          True]
    assert out["CHECK"] is None and out["STATUS"] is None and out["DEL"] is None
    assert out["check_after_del"] == 104


def test_handle_rejects_bad_input_before_touching_the_store(tmp_path):
    from cni_calico_py.core.errors import CNIError
    from cni_calico_py.core.request import Request
    from ipam.plugin import handle

    for stdin, code in [(b"{", 6), (json.dumps({"name": "n"}).encode(), 7),
                        (json.dumps({**netconf(tmp_path), "cniVersion": "0.3.1"}).encode(), 1)]:
        with pytest.raises(CNIError) as caught:
            handle(Request(command="GC" if code == 1 else "ADD", container_id="c", netns="/n",
                           ifname="eth0", stdin=stdin))
        assert caught.value.code == code
    assert not (tmp_path / "ipamtest").exists()
