import ipaddress

import pytest

from cni_calico_py.core import results
from cni_calico_py.core.errors import CNIError, Code


def sample() -> results.Result:
    return results.Result(
        interfaces=[
            results.Interface(name="cali0123456789a", mac="ee:ee:ee:ee:ee:ee", mtu=1450),
            results.Interface(name="eth0", mac="02:00:00:00:00:01", sandbox="/run/netns/p", mtu=1450),
        ],
        ips=[
            results.IPConfig(address=ipaddress.ip_interface("192.168.97.5/32"), interface=1),
            results.IPConfig(address=ipaddress.ip_interface("fd00::5/128"), interface=1),
        ],
        routes=[
            results.Route(dst=ipaddress.ip_network("0.0.0.0/0"), gw=ipaddress.ip_address("169.254.1.1"),
                          mtu=1400),
        ],
        dns=results.DNS(nameservers=["10.96.0.10"]),
    )


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_old_versions_tag_ips(version):
    out = results.to_json(sample(), version)
    assert out["cniVersion"] == version
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    assert all("mtu" not in i for i in out["interfaces"])
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]


def test_1_0_0_drops_version_and_mtu():
    out = results.to_json(sample(), "1.0.0")
    assert all("version" not in ip for ip in out["ips"])
    assert all("mtu" not in i for i in out["interfaces"])
    assert out["ips"][0] == {"address": "192.168.97.5/32", "interface": 1}


def test_1_1_0_adds_mtu():
    out = results.to_json(sample(), "1.1.0")
    assert [i["mtu"] for i in out["interfaces"]] == [1450, 1450]
    assert out["routes"][0]["mtu"] == 1400
    assert out["dns"] == {"nameservers": ["10.96.0.10"]}


@pytest.mark.parametrize("src", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
@pytest.mark.parametrize("dst", ["0.3.1", "1.0.0", "1.1.0"])
def test_round_trip_between_versions(src, dst):
    parsed = results.from_json(results.to_json(sample(), src))
    out = results.to_json(parsed, dst)
    assert out["cniVersion"] == dst
    assert [ip["address"] for ip in out["ips"]] == ["192.168.97.5/32", "fd00::5/128"]
    assert out["interfaces"][1]["sandbox"] == "/run/netns/p"


def test_unsupported_prev_result_version():
    with pytest.raises(CNIError) as err:
        results.from_json({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.1/24"}})
    assert err.value.code == Code.INCOMPATIBLE_VERSION


@pytest.mark.parametrize("bad", [[], {"ips": []}, {"cniVersion": "1.0.0", "ips": [{"address": "x"}]}])
def test_malformed_prev_result(bad):
    with pytest.raises(CNIError) as err:
        results.from_json(bad)
    assert err.value.code == Code.DECODING_FAILURE
