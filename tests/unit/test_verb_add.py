"""ADD over the fake IPAM and dataplane: the steps, and the undo after each failing one."""

from __future__ import annotations

import ipaddress

import pytest

from cni_calico_py.commands import verb
from cni_calico_py.commands.add import add
from cni_calico_py.core import cancel
from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.results import DNS
from cni_calico_py.dataplane import netns
from tests.fakes import gone, invocation, refused

V4, V6 = ipaddress.ip_address("10.0.0.5"), ipaddress.ip_address("fd00::5")
ADD_STEPS = ["ipam reserve", "create_pair", "configure_links", "add_addresses", "add_routes",
             f"add_host_route {V4}", f"add_host_route {V6}", "pod_mac"]


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
    dataplane.kernel.owners[inv.host_veth] = inv.pod.owner
    add(inv, ipam, dataplane)
    assert journal == ["ipam reserve", "replace earlier pair", *ADD_STEPS[1:]]


def test_add_refuses_another_attachments_interface_and_leaves_it(journal, ipam, dataplane):
    inv = invocation()
    dataplane.kernel.add_pair("eth0", inv.host_veth)
    dataplane.kernel.owners[inv.host_veth] = "calico-py another"
    with pytest.raises(CNIError) as err:
        add(inv, ipam, dataplane)
    assert err.value.code == Code.DATAPLANE_FAILURE
    assert journal == ["ipam reserve", "ipam undo reserve"] and ipam.held == []
    assert dataplane.kernel.pod_links == {"eth0": inv.host_veth}


def test_a_retry_that_cannot_reserve_leaves_the_working_pair(journal, ipam, dataplane):
    inv = invocation()
    dataplane.kernel.add_pair("eth0", inv.host_veth)
    dataplane.kernel.owners[inv.host_veth] = inv.pod.owner
    ipam.fail_at = "reserve"
    with pytest.raises(CNIError):
        add(inv, ipam, dataplane)
    assert journal == [] and dataplane.kernel.pod_links == {"eth0": inv.host_veth}


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
