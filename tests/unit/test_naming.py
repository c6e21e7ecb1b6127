import hashlib

from cni_calico_py.dataplane.naming import host_veth_name


def test_calico_name_for_pods():
    expected = "cali" + hashlib.sha1(b"default.web-0").hexdigest()[:11]
    assert host_veth_name("cali", "default", "web-0", "abc") == expected
    assert len(expected) == 15


def test_container_ids_sharing_a_prefix_get_distinct_names():
    a = host_veth_name("cali", "", "", "default-web-aaaaaaaa")
    b = host_veth_name("cali", "", "", "default-web-aaaaaaab")
    assert a != b and len(a) == len(b) == 15


def test_prefix_is_configurable():
    assert host_veth_name("pod", "ns", "p", "x").startswith("pod")
