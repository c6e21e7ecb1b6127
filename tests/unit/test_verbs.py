"""ADD, DEL, CHECK, GC and STATUS over the fake IPAM and dataplane: every rollback path."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from cni_calico_py.commands import verb
from cni_calico_py.commands.add import add
from cni_calico_py.commands.check import check
from cni_calico_py.commands.delete import delete
from cni_calico_py.commands.housekeeping import gc, status
from cni_calico_py.commands.invocation import Invocation
from cni_calico_py.config import ContainerSettings, IpamSection, NetConf
from cni_calico_py.core import cancel
from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.request import Request
from cni_calico_py.core.results import DNS
from cni_calico_py.dataplane import netns
from tests.fakes import FakeDataplane, FakeIpam, gone, refused

V4, V6 = ipaddress.ip_address("10.0.0.5"), ipaddress.ip_address("fd00::5")
ADD_STEPS = ["ipam reserve", "create_pair", "configure_links", "add_addresses", "add_routes",
             f"add_host_route {V4}", f"add_host_route {V6}", "pod_mac"]


def invocation(command: str = "ADD", netns_path: str = "/var/run/netns/pod", mtu: int = 1450,
               dns: dict[str, Any] | None = None, prev: dict[str, Any] | None = None) -> Invocation:
    request = Request(command=command, container_id="c1", netns=netns_path, ifname="eth0",
                      args={"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web"})
    netconf = NetConf(
        cni_version="1.0.0", name="net", type="calico-py", ipam=IpamSection("calico-py-ipam"),
        mtu=mtu, mtu_file_path="/nonexistent/mtu", veth_prefix="cali", log_level="info",
        log_file_path=None, container_settings=ContainerSettings(), nodename=None, dns=dns,
        prev_result=prev,
    )
    return Invocation(request, netconf, {})


@pytest.fixture
def journal() -> list[str]:
    return []


@pytest.fixture
def ipam(journal) -> FakeIpam:
    return FakeIpam(journal, offer=["10.0.0.5/26", "fd00::5/64"])


@pytest.fixture
def dataplane(journal) -> FakeDataplane:
    return FakeDataplane(journal)


def test_add_reserves_wires_and_reports(journal, ipam, dataplane):
    inv = invocation()
    result = add(inv, ipam, dataplane)
    assert journal == ADD_STEPS
    assert [(i.name, i.sandbox, i.mtu) for i in result.interfaces] == [
        (inv.host_veth, "", 1450), ("eth0", "/var/run/netns/pod", 1450)]
    assert [(str(ip.address), ip.interface) for ip in result.ips] == [
        ("10.0.0.5/32", 1), ("fd00::5/128", 1)]
    assert [(str(r.dst), str(r.gw)) for r in result.routes] == [
        ("0.0.0.0/0", "169.254.1.1"), ("::/0", "fe80::ecee:eeff:feee:eeee")]
    assert dataplane.kernel.host_routes == {V4: inv.host_veth, V6: inv.host_veth}


# Each failing step, and the undo that must follow it, newest first.
@pytest.mark.parametrize(("fail_at", "undone"), [
    ("create_pair", ["ipam undo reserve"]),
    ("configure_links", ["delete_pair", "ipam undo reserve"]),
    ("add_addresses", ["delete_pair", "ipam undo reserve"]),
    ("add_routes", ["delete_pair", "ipam undo reserve"]),
    (f"add_host_route {V4}", ["delete_pair", "ipam undo reserve"]),
    (f"add_host_route {V6}", ["delete_pair", "ipam undo reserve"]),
    ("pod_mac", ["delete_pair", "ipam undo reserve"]),
])
def test_a_failed_add_step_undoes_what_was_done_in_reverse(journal, ipam, dataplane, fail_at, undone):
    dataplane.fail_at = fail_at
    with pytest.raises(CNIError) as err:
        add(invocation(), ipam, dataplane)
    assert err.value.msg == f"injected failure at {fail_at}"
    done = ADD_STEPS[:ADD_STEPS.index(fail_at)]
    assert journal == done + undone
    assert dataplane.kernel.empty() and ipam.held == []


def test_a_failed_reserve_changes_nothing(journal, ipam, dataplane):
    ipam.fail_at = "reserve"
    with pytest.raises(CNIError) as err:
        add(invocation(), ipam, dataplane)
    assert err.value.code == Code.IPAM_FAILURE
    assert journal == [] and dataplane.kernel.empty()


def test_no_address_after_reserve_undoes_the_reserve(journal, ipam, dataplane):
    ipam.offer = []
    with pytest.raises(CNIError) as err:
        add(invocation(), ipam, dataplane)
    assert err.value.code == Code.IPAM_FAILURE
    assert "returned no address" in err.value.msg
    assert journal == ["ipam reserve", "ipam undo reserve"]


def test_the_undo_releases_only_what_this_add_reserved(journal, ipam, dataplane):
    earlier = ipaddress.ip_address("10.0.0.9")
    ipam.held = [earlier]
    dataplane.fail_at = "add_routes"
    with pytest.raises(CNIError):
        add(invocation(), ipam, dataplane)
    assert ipam.held == [earlier]


def test_a_failing_undo_step_is_logged_and_the_rest_runs(journal, ipam, dataplane):
    dataplane.fail_at = "add_addresses"
    ipam.fail_at = "undo reserve"
    with pytest.raises(CNIError) as err:
        add(invocation(), ipam, dataplane)
    assert err.value.msg == "injected failure at add_addresses"
    assert journal[-1] == "delete_pair" and dataplane.kernel.empty()


def test_the_undo_runs_to_its_end_when_the_caller_has_gone(journal, ipam, dataplane):
    dataplane.fail_at = "configure_links"
    cancel.watch(lambda: True)
    try:
        with pytest.raises(CNIError):
            add(invocation(), ipam, dataplane)
    finally:
        cancel.watch(None)
    assert journal[-2:] == ["delete_pair", "ipam undo reserve"] and ipam.held == []


def test_the_netns_vanishing_mid_add_is_error_4_after_the_undo(journal, ipam, dataplane):
    dataplane.fail_at, dataplane.fail_with = "configure_links", gone()
    with pytest.raises(CNIError) as err:
        add(invocation(), ipam, dataplane)
    assert err.value.code == Code.INVALID_ENVIRONMENT
    assert journal[-2:] == ["delete_pair", "ipam undo reserve"]


def test_add_rebuilds_its_own_earlier_pair(journal, ipam, dataplane):
    inv = invocation()
    dataplane.kernel.add_pair("eth0", inv.host_veth)
    add(inv, ipam, dataplane)
    assert journal == ["replace earlier pair", *ADD_STEPS]


def test_add_refuses_a_foreign_interface_before_any_change(journal, ipam, dataplane):
    dataplane.kernel.add_pair("eth0", "other0")
    with pytest.raises(CNIError) as err:
        add(invocation(), ipam, dataplane)
    assert err.value.code == Code.DATAPLANE_FAILURE
    assert journal == [] and ipam.held == []


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
def test_a_missing_netns_is_error_4_naming_the_verb(journal, ipam, dataplane, command):
    dataplane.netns_error = gone()
    prev = {"cniVersion": "1.0.0"}
    with pytest.raises(CNIError) as err:
        verb(command)(invocation(command, prev=prev), ipam, dataplane)
    assert err.value.code == Code.INVALID_ENVIRONMENT
    assert err.value.msg == "CNI_NETNS '/var/run/netns/pod' does not exist"
    assert err.value.details.endswith(f"must exist for {command}")
    assert "ipam reserve" not in journal


def test_a_refused_netns_is_refused_by_add(journal, ipam, dataplane):
    dataplane.netns_error = refused()
    with pytest.raises(netns.NetnsRefused):
        add(invocation(), ipam, dataplane)
    assert journal == []


@pytest.mark.parametrize(("config_dns", "ipam_dns", "prev_dns", "want"), [
    ({"nameservers": ["10.96.0.10"], "search": ["svc"]}, ["1.1.1.1"], None,
     DNS(nameservers=["10.96.0.10"], search=["svc"])),
    ({}, ["1.1.1.1"], None, DNS(nameservers=["1.1.1.1"])),
    (None, [], ["9.9.9.9"], DNS(nameservers=["9.9.9.9"])),
])
def test_dns_comes_from_the_config_then_the_ipam_then_prev(ipam, dataplane, config_dns, ipam_dns,
                                                           prev_dns, want):
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "lo0"}],
            "dns": {"nameservers": prev_dns}} if prev_dns else None
    reserve = ipam.reserve

    def with_dns():
        result, undo = reserve()
        result.dns = DNS(nameservers=ipam_dns)
        return result, undo

    ipam.reserve = with_dns
    result = add(invocation(dns=config_dns, prev=prev), ipam, dataplane)
    assert result.dns == want
    if prev:
        assert result.interfaces[0].name == "lo0" and result.ips[0].interface == 2


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
