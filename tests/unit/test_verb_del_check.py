"""DEL, CHECK, GC and STATUS over the fake IPAM and dataplane."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from cni_calico_py.commands.add import add
from cni_calico_py.commands.check import check
from cni_calico_py.commands.delete import delete
from cni_calico_py.commands.housekeeping import gc, status
from cni_calico_py.core import cancel
from cni_calico_py.core.errors import CNIError, Code
from tests.fakes import FakeIpam, gone, invocation, refused

V4 = ipaddress.ip_address("10.0.0.5")


def test_del_removes_the_pod_end_then_releases(journal, ipam, dataplane):
    inv = invocation("DEL")
    add(invocation(), ipam, dataplane)
    journal.clear()
    delete(inv, ipam, dataplane)
    assert journal == ["teardown eth0: removed", "ipam release"]
    assert dataplane.kernel.empty() and ipam.held == []


@pytest.mark.parametrize("netns_error", [gone(), refused(), None])
def test_del_without_the_pod_end_removes_the_host_veth_routing_its_addresses(
        journal, ipam, dataplane, netns_error):
    add(invocation(), ipam, dataplane)
    inv = invocation("DEL", netns_path="" if netns_error is None else "/var/run/netns/pod")
    dataplane.netns_error = netns_error
    journal.clear()
    delete(inv, ipam, dataplane)
    assert journal == [f"remove orphan {inv.host_veth}", "ipam release"]
    assert dataplane.kernel.empty() and ipam.held == []


def test_del_leaves_a_host_veth_of_that_name_routing_other_addresses(journal, ipam, dataplane):
    inv = invocation("DEL")
    dataplane.kernel.add_pair("eth1", inv.host_veth)  # a newer sandbox's, under the same name
    dataplane.kernel.host_routes[ipaddress.ip_address("10.0.0.7")] = inv.host_veth
    ipam.held = [V4]
    delete(inv, ipam, dataplane)
    assert journal == ["teardown eth0: missing", "ipam release"]
    assert inv.host_veth in dataplane.kernel.host_links


def test_del_of_another_container_in_the_same_netns_changes_nothing_there(journal, ipam,
                                                                         dataplane):
    add(invocation(), ipam, dataplane)
    journal.clear()
    other = invocation("DEL", container_id="c2")  # its ADD was refused: eth0 is c1's
    delete(other, FakeIpam(journal), dataplane)
    assert journal[0] == "teardown eth0: not its own"
    assert dataplane.kernel.pod_links == {"eth0": other.host_veth}


def test_del_of_a_gone_pod_with_nothing_held_only_releases(journal, ipam, dataplane):
    dataplane.netns_error = gone()
    delete(invocation("DEL"), ipam, dataplane)
    assert journal == ["ipam release"]


def prev_result(host_veth: str) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": host_veth, "mtu": 1400},
                       {"name": "eth0", "sandbox": "/var/run/netns/pod", "mac": "0a:58:0a:00:00:05"}],
        "ips": [{"address": "10.0.0.5/32", "interface": 1}, {"address": "10.9.0.1/24", "interface": 7}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}, {"dst": "10.1.0.0/16", "gw": "10.9.0.254"}],
    }


def test_check_compares_only_what_add_made(journal, ipam, dataplane):
    inv = invocation("CHECK", prev=prev_result(invocation().host_veth))
    assert check(inv, ipam, dataplane) is None
    made = dataplane.inspected[0]
    assert (made.pod.name, made.host.name) == ("eth0", inv.host_veth)
    assert (made.pod_mtu, made.host_mtu) == (1450, 1400)
    assert made.addresses == [V4]
    assert [str(r.dst) for r in made.routes] == ["0.0.0.0/0"]
    assert journal == ["ipam check"]


def test_check_reports_every_problem_with_the_ipam_s(journal, ipam, dataplane):
    ipam.fail_at = "check"
    dataplane.problems = ["host interface caliX is missing"]
    inv = invocation("CHECK", prev=prev_result("caliX"))
    with pytest.raises(CNIError) as err:
        check(inv, ipam, dataplane)
    assert err.value.code == Code.CHECK_FAILED
    assert err.value.msg == ("CHECK found 2 problem(s): IPAM: injected IPAM failure at check; "
                             "host interface caliX is missing")
    assert err.value.details == "container c1, interface eth0"


def test_check_names_a_prev_result_without_the_pod_interface(ipam, dataplane):
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "lo0"}]}
    with pytest.raises(CNIError) as err:
        check(invocation("CHECK", prev=prev), ipam, dataplane)
    assert "prevResult lists no interface eth0 in /var/run/netns/pod" in err.value.msg


def test_check_without_prev_result_is_error_7(journal, ipam, dataplane):
    with pytest.raises(CNIError) as err:
        check(invocation("CHECK"), ipam, dataplane)
    assert err.value.code == Code.INVALID_NETWORK_CONFIG and journal == []


class Record:
    def __init__(self, damaged: str = "") -> None:
        self.damaged, self.container_id, self.ifname = damaged, "old", "eth0"


def test_gc_removes_the_veth_routing_a_stale_address_before_freeing_it(journal, ipam, dataplane):
    add(invocation(), ipam, dataplane)
    damaged = ipaddress.ip_address("10.0.0.6")
    dataplane.kernel.host_routes[damaged] = "cali0damaged"
    ipam.stale = [(damaged, Record("unreadable")), (V4, Record())]
    journal.clear()
    gc(invocation("GC"), ipam, dataplane)
    assert ipam.freed == [V4]  # the damaged one is kept: a live pod interface routes it
    assert journal == ["ipam gc", f"remove orphan {invocation().host_veth}"]


def test_status_asks_the_ipam(journal, ipam, dataplane):
    status(invocation("STATUS"), ipam, dataplane)
    assert journal == ["ipam status"]


def test_a_del_whose_caller_goes_after_it_began_finishes(journal, ipam, dataplane):
    add(invocation(), ipam, dataplane)
    journal.clear()
    release = ipam.release

    def release_after_checking() -> None:
        # The store lock's wait asks whether the caller is still there.
        cancel.check("the IPAM store lock was taken")
        release()

    ipam.release = release_after_checking
    cancel.watch(lambda: "teardown eth0: removed" in journal)
    try:
        delete(invocation("DEL"), ipam, dataplane)
    finally:
        cancel.watch(None)
    assert journal == ["teardown eth0: removed", "ipam release"]
    assert dataplane.kernel.empty() and ipam.held == []
