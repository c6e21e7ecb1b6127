import pytest

from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.request import from_environ, parse_cni_args

BASE = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"}


def test_cni_args_parsed():
    args = parse_cni_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;Other=x")
    assert args["K8S_POD_NAMESPACE"] == "default"
    assert args["K8S_POD_NAME"] == "web-0"
    assert args["Other"] == "x"


@pytest.mark.parametrize("flag", ["1", "true", "True"])
def test_ignore_unknown_values(flag):
    assert parse_cni_args(f"IgnoreUnknown={flag};Foo=bar")["Foo"] == "bar"


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("Foo=bar", "unknown key(s) Foo"),
        ("IgnoreUnknown=0;Foo=bar", "unknown key(s) Foo"),
        ("K8S_POD_NAME", "expected KEY=VALUE"),
        ("=x", "expected KEY=VALUE"),
    ],
)
def test_bad_cni_args(raw, fragment):
    with pytest.raises(CNIError) as err:
        parse_cni_args(raw)
    assert err.value.code == Code.INVALID_ENVIRONMENT
    assert "CNI_ARGS" in err.value.msg and fragment in err.value.msg


def test_empty_items_are_ignored():
    assert parse_cni_args(";;IP=10.0.0.1;") == {"IP": "10.0.0.1"}


@pytest.mark.parametrize(
    "verb, missing",
    [
        ("ADD", "CNI_CONTAINERID"), ("ADD", "CNI_NETNS"), ("ADD", "CNI_IFNAME"),
        ("CHECK", "CNI_NETNS"), ("DEL", "CNI_CONTAINERID"), ("DEL", "CNI_IFNAME"),
    ],
)
def test_required_variables(verb, missing):
    env = {**BASE, "CNI_COMMAND": verb}
    del env[missing]
    with pytest.raises(CNIError) as err:
        from_environ(env, b"")
    assert err.value.code == Code.INVALID_ENVIRONMENT
    assert missing in err.value.msg and "required" in err.value.msg


def test_del_without_netns_is_fine():
    env = {**BASE, "CNI_COMMAND": "DEL"}
    del env["CNI_NETNS"]
    assert from_environ(env, b"").netns == ""


def test_gc_needs_path():
    with pytest.raises(CNIError) as err:
        from_environ({"CNI_COMMAND": "GC"}, b"")
    assert "CNI_PATH" in err.value.msg
    assert from_environ({"CNI_COMMAND": "GC", "CNI_PATH": "/a:/b"}, b"").path == ("/a", "/b")


@pytest.mark.parametrize("cid", ["-abc", "a/b", "a b", "ab$c", "_x"])
def test_bad_container_id(cid):
    with pytest.raises(CNIError) as err:
        from_environ({**BASE, "CNI_CONTAINERID": cid}, b"")
    assert err.value.code == Code.INVALID_ENVIRONMENT and "CNI_CONTAINERID" in err.value.msg


@pytest.mark.parametrize("cid", ["abc", "default-web", "0a.b_c-d", "K8s"])
def test_good_container_id(cid):
    assert from_environ({**BASE, "CNI_CONTAINERID": cid}, b"").container_id == cid


@pytest.mark.parametrize("ifname", ["a" * 16, ".", "..", "eth/0", "eth:0", "eth 0"])
def test_bad_ifname(ifname):
    with pytest.raises(CNIError) as err:
        from_environ({**BASE, "CNI_IFNAME": ifname}, b"")
    assert err.value.code == Code.INVALID_ENVIRONMENT and "CNI_IFNAME" in err.value.msg


def test_unknown_command():
    with pytest.raises(CNIError) as err:
        from_environ({"CNI_COMMAND": "ATTACH"}, b"")
    assert err.value.code == Code.INVALID_ENVIRONMENT and "CNI_COMMAND" in err.value.msg


def test_pod_identity():
    request = from_environ({**BASE, "CNI_ARGS": "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"}, b"")
    assert (request.pod_namespace, request.pod_name) == ("ns", "p")
