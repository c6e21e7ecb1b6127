"""Generated requests, hostile and not, served in-process inside a node namespace.

Every request varies the environment (verb, container ID, netns, ifname,
CNI_ARGS, CNI_PATH), stdin (garbage bytes, JSON of the wrong shape, deep
nesting, numbers too large) and the config (a valid one with its fields
given wrong types or values, bad dns, bad prevResult, bad ipam sections).
Each one must hold to:

- no internal error (code 999) and nothing written to stdout but the result;
- what would be printed is one JSON object (an error, or ADD's or VERSION's
  result; nothing for a DEL, CHECK, GC or STATUS that succeeds);
- a request known to be invalid never exits 0;
- after any request but a successful ADD, the node's links, routes and
  sysctls, the pod's links and the IPAM store are as they were; a
  successful ADD is undone by its DEL, leaving the node as it was.

The test process enters the node's namespace for the run (setns), so the
node is a namespace of its own and requests cost no process start.
`CALICO_PY_FUZZ_EXAMPLES` sets how many requests (2000 by default);
`CALICO_PY_FUZZ_SEED` picks another sequence than the fixed default one.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from cni_calico_py import main
from cni_calico_py.core import logs
from cni_calico_py.core.errors import Code
from cni_calico_py.core.rtnl import (  # pyroute2's, loaded as rtnl loads them
    NLM_F_DUMP,
    RTM_GETLINK,
    Rtnl,
    ifinfmsg,
)
from cni_calico_py.core.versions import SUPPORTED_VERSIONS
from cni_calico_py.dataplane import netns
from tests.cni_calls import BLOCK_V4
from tests.netns import Node, make_node

pytestmark = pytest.mark.netns

EXAMPLES = int(os.environ.get("CALICO_PY_FUZZ_EXAMPLES", "2000"))
SEED = os.environ.get("CALICO_PY_FUZZ_SEED")
CASE_SECONDS = 30  # a request that blocks (a FIFO opened, say) fails instead of hanging

VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
ATTACHMENT_VERBS = ("ADD", "CHECK", "DEL")
CONFIGURED = ("ADD", "DEL", "CHECK", "GC", "STATUS")
ALL = frozenset(CONFIGURED)
NETWORK = "fuzznet"
DELETE = object()
NODE_SYSCTLS = ("ipv4/ip_forward", "ipv6/conf/all/forwarding", "ipv4/conf/eth0/forwarding",
                "ipv4/conf/eth0/proxy_arp", "ipv4/conf/all/forwarding", "ipv6/conf/eth0/accept_ra")
KNOWN_CODES = {int(c) for c in Code} - {int(Code.INTERNAL)}

PREV = {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/p"}],
        "ips": [{"address": "10.252.7.9/32", "interface": 0}], "routes": [{"dst": "0.0.0.0/0"}]}
INF, NAN = math.inf, math.nan


@dataclass
class Places:
    """Paths the requests point at; all made for this run."""

    node: Node
    pod: str
    root: Path
    store: Path
    cni_path: Path
    regular: Path
    fifo: Path

    def netns_choices(self) -> list[tuple[str, str | None]]:
        """(kind, CNI_NETNS); None means the variable is absent."""
        return [
            ("pod", self.pod), ("pod", self.pod), ("pod", self.pod),
            ("hostile", "/proc/self/ns/net"), ("hostile", self.node.path),
            ("hostile", f"/proc/{os.getpid()}/ns/net"), ("hostile", str(self.regular)),
            ("hostile", str(self.root)), ("hostile", "/dev/null"), ("hostile", str(self.fifo)),
            ("hostile", "/proc/self/ns/mnt"), ("hostile", "/proc/self/ns/user"),
            ("hostile", "var/run/netns/relative"), ("hostile", "/tmp/nul\0byte"),
            ("missing", "/var/run/netns/cpt-fuzz-no-such-netns"), ("missing", str(self.root / "gone")),
            ("missing", "/proc/self/ns/net/below"), ("missing", "/tmp/\udcff-not-utf8"),
            ("empty", ""), ("empty", None),
        ]


@dataclass
class Case:
    env: dict[str, str]
    stdin: bytes
    verb: str
    # Why the request must be refused, when that is known from how it was made.
    defects: list[str] = field(default_factory=list)


def base_conf(places: Places, version: str) -> dict[str, Any]:
    return {
        "cniVersion": version, "name": NETWORK, "type": "calico-py",
        "mtu_file_path": str(places.root / "no-mtu-file"),
        "log_file_path": str(places.root / "plugin.log"),
        "ipam": {"type": "calico-py-ipam", "ranges": [[{"subnet": BLOCK_V4}]],
                 "dataDir": str(places.store), "nodeStateFile": str(places.root / "node-state.json")},
        "cni.dev/valid-attachments": [],
    }


# (path in the config, value or DELETE, the verbs it makes the request invalid for)
MUTATIONS: list[tuple[tuple[str, ...], Any, frozenset[str]]] = [
    *((("cniVersion",), v, ALL) for v in (DELETE, 1, "", "9.9.9", "0.2.0", ["1.0.0"], None)),
    *((("name",), v, ALL) for v in (DELETE, 5, "", "bad name", "a/b", "net\n", "ä", None, "-x")),
    *((("type",), v, ALL) for v in (DELETE, 5, "", None)),
    *((("ipam",), v, ALL) for v in (DELETE, "x", [], 5, {}, None)),
    *((("ipam", "type"), v, ALL) for v in (DELETE, "", 5, "no-such-ipam", "a/b")),
    *((("ipam", "ranges"), v, ALL) for v in (
        "x", [["x"]], [[{"subnet": "10.252.7.1/26"}]], [[{"subnet": 5}]], [[]], [[{"subnet": ""}]],
        [[{"subnet": BLOCK_V4, "rangeStart": "10.1.1.1"}]], [[{"subnet": BLOCK_V4, "bogus": 1}]],
        [[{"subnet": BLOCK_V4, "rangeStart": "10.252.7.9", "rangeEnd": "10.252.7.3"}]],
        [[{"subnet": BLOCK_V4}, {"subnet": "fd00::/120"}]], [[{"subnet": BLOCK_V4}], [{"subnet": BLOCK_V4}]],
    )),
    (("ipam", "ranges"), DELETE, frozenset()),  # cluster mode, without a node state file
    *((("ipam", "subnet"), v, ALL) for v in ("", 5, "garbage", "10.0.0.1/24", "10.252.7.0")),
    (("ipam", "subnet"), "10.253.0.0/28", frozenset()),
    (("ipam", "rangeStart"), "10.252.7.5", ALL),
    (("ipam", "gateway"), "", ALL),
    *((("ipam", "dataDir"), v, ALL) for v in (5, "", "relative/dir", "/tmp/a\0b", None, ["x"], "/\udcff")),
    *((("ipam", "lockTimeoutSeconds"), v, ALL) for v in (0, -1, 121, 600, "10", True, INF, NAN, None)),
    (("ipam", "lockTimeoutSeconds"), 0.5, frozenset()),
    *((("ipam", "routes"), v, ALL) for v in (
        "x", [{"dst": "garbage"}], [{"dst": 5}], [{"dst": "0.0.0.0/0", "gw": "fd00::1"}],
        [{"dst": "10.0.0.1/8"}], [{"dst": "0.0.0.0/0", "bogus": 1}], [5])),
    (("ipam", "routes"), [{"dst": "10.96.0.0/12"}], frozenset()),
    *((("ipam", "nodeStateFile"), v, ALL) for v in (5, "", "relative")),
    *((("mtu",), v, ALL) for v in ("1500", True, 1.5, 10, 70000, -1, 10**30, INF, NAN, [1500])),
    *((("mtu",), v, frozenset()) for v in (1400, None)),
    *((("mtu_file_path",), v, ALL) for v in (5, "/tmp/a\0b", ["x"], None)),
    *((("veth_prefix",), v, ALL) for v in ("", "toolong", 5, "c%d", "a/b", "é", "a b", None)),
    (("veth_prefix",), "vz", frozenset()),
    *((("log_level",), v, ALL) for v in ("chatty", 5, None, "")),
    (("log_level",), "DEBUG", frozenset()),
    *((("log_file_path",), v, ALL) for v in (5, "/tmp/a\0b", [])),
    *((("container_settings",), v, ALL) for v in (
        "x", {"allow_ip_forwarding": "yes"}, {"allow_ip_forwarding": 1}, [], None)),
    (("container_settings",), {"allow_ip_forwarding": True}, frozenset()),
    *((("nodename",), v, ALL) for v in (5, [])),
    *((("dns",), v, ALL) for v in (
        "x", 5, [], {"nameservers": 5}, {"nameservers": "8.8.8.8"}, {"nameservers": ["nope"]},
        {"nameservers": [8]}, {"domain": 5}, {"search": "a"}, {"options": [1]}, {"bogus": 1})),
    (("dns",), {"nameservers": ["10.96.0.10"], "search": ["svc.local"], "options": ["ndots:5"]},
     frozenset()),
    *((("runtimeConfig",), v, ALL) for v in ("x", 5, [])),
    *((("runtimeConfig",), v, frozenset({"ADD"})) for v in (
        {"ips": "x"}, {"ips": ["nope"]}, {"ips": ["10.99.0.1"]}, {"ips": [5]})),
    (("runtimeConfig",), {"ips": ["10.252.7.20"]}, frozenset()),
    *((("args",), v, ALL) for v in ("x", 5)),
    (("args",), {"cni": {"ips": 5}}, frozenset({"ADD"})),
    *((("prevResult",), v, ALL) for v in (
        "x", 5, [], {"cniVersion": 5}, {"cniVersion": "9.9.9"}, {**PREV, "ips": "x"},
        {**PREV, "ips": [{"address": 5}]}, {**PREV, "ips": [{"address": "10.0.0.1/24", "gateway": 5}]},
        {**PREV, "interfaces": [{"name": "eth0", "mtu": INF}]}, {**PREV, "interfaces": [{}]},
        {**PREV, "interfaces": [{"name": "eth0", "mtu": 10**30}]}, {**PREV, "routes": [{"dst": "x"}]},
        {**PREV, "routes": [{"dst": "0.0.0.0/0", "table": -1}]}, {**PREV, "dns": {"nameservers": "8.8.8.8"}},
        {**PREV, "dns": {"search": [1]}}, {**PREV, "dns": "x"})),
    *((("prevResult",), v, frozenset({"CHECK"})) for v in (DELETE, {}, None)),
    *((("cni.dev/valid-attachments",), v, frozenset({"GC"})) for v in (
        DELETE, "x", [{"containerID": 5, "ifname": "eth0"}], [5], [{"containerID": "a"}])),
    (("zzz-unknown",), {"anything": [1, 2]}, frozenset()),
]


def _apply(conf: dict[str, Any], path: tuple[str, ...], value: Any) -> bool:
    """Set (or delete) `path` in conf; False when a parent is missing or not an object."""
    parent: Any = conf
    for key in path[:-1]:
        parent = parent.get(key) if isinstance(parent, dict) else None
    if not isinstance(parent, dict):
        return False
    if value is DELETE:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = json.loads(json.dumps(value))  # a copy: values are shared
    return True


VALID_IDS = st.builds(lambda h: f"fz{h}", st.text("0123456789abcdef", min_size=4, max_size=12))
BAD_IDS = ["-x", "a b", "a/b", "abc\n", "ä", "_x", ".x", "a;b", "a\0b"]
GOOD_IFNAMES = ["eth0", "eth1", "net.1", "é", "a" * 15, "a" * 13 + "é"]
BAD_IFNAMES = ["a" * 16, "a" * 14 + "é", "ü" * 8, "%d", "e%dx", "e/0", "e:0", "e 0", ".", "..",
               "e\t0", "e\x01", "\udcff", "e\u200b", "e\u00a0"]
GOOD_ARGS = ["", "IgnoreUnknown=1;Foo=bar", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p", ";;",
             "IP=10.252.7.9", "K8S_POD_NAME=" + "x" * 5000, "IgnoreUnknown=true;x=y=z"]
BAD_ARGS = ["Foo=bar", "garbage", "=x", "IgnoreUnknown=0;Foo=bar", "K8S_POD_NAME"]
ADD_ONLY_BAD_ARGS = ["IP=not-an-ip", "IP=10.99.0.1", "IP=10.252.7.9,10.252.7.10"]
BAD_VERBS = ["", "add", "BOGUS", "ADD ", " DEL", "ÄDD", "VERSION\n", "A" * 300, "DEL\0"]
# Weighted towards the verbs that change the node.
GOOD_VERBS = ["ADD"] * 4 + ["DEL"] * 3 + ["CHECK"] * 2 + ["GC", "STATUS", "VERSION"]
# What a request may get wrong; each request gets up to three of them wrong, the rest right.
DIMENSIONS = ("verb", "id", "netns", "ifname", "args", "path", "stdin", "config")
VALID_MUTATIONS = [m for m in MUTATIONS if not m[2]]


@st.composite
def cases(draw: st.DrawFn, places: Places) -> Case:
    hostile = draw(st.sets(st.sampled_from(DIMENSIONS), max_size=3))
    verb = draw(st.sampled_from([*BAD_VERBS, None] if "verb" in hostile else GOOD_VERBS))
    case = Case(env={}, stdin=b"", verb=verb or "")
    flag = case.defects.append
    if verb is None:
        flag("CNI_COMMAND absent")
    else:
        case.env["CNI_COMMAND"] = verb
        if verb not in VERBS:
            flag("CNI_COMMAND")
    attachment = verb in ATTACHMENT_VERBS
    configured = verb in CONFIGURED

    if "id" in hostile:
        container_id = draw(st.sampled_from([*BAD_IDS, "", None]))
    else:
        container_id = draw(st.one_of(VALID_IDS, VALID_IDS, VALID_IDS, st.just("c" * 4000)))
    if container_id is not None:
        case.env["CNI_CONTAINERID"] = container_id
    if container_id in BAD_IDS:
        flag("CNI_CONTAINERID")
    elif not container_id and attachment:
        flag("CNI_CONTAINERID missing")

    choices = [c for c in places.netns_choices() if (c[0] != "pod") == ("netns" in hostile)]
    kind, path = draw(st.sampled_from(choices))
    if path is not None:
        case.env["CNI_NETNS"] = path
    if kind != "pod" and verb in ("ADD", "CHECK"):
        flag(f"CNI_NETNS {kind}")

    ifname = draw(st.sampled_from([*BAD_IFNAMES, "", None] if "ifname" in hostile else GOOD_IFNAMES))
    if ifname is not None:
        case.env["CNI_IFNAME"] = ifname
    if attachment and (ifname is None or ifname in BAD_IFNAMES or not ifname):
        flag("CNI_IFNAME")

    args = draw(st.sampled_from([*BAD_ARGS, *ADD_ONLY_BAD_ARGS] if "args" in hostile
                                else [*GOOD_ARGS, None]))
    if args is not None:
        case.env["CNI_ARGS"] = args
    if args in BAD_ARGS and configured:
        flag("CNI_ARGS")
    if args in ADD_ONLY_BAD_ARGS and verb == "ADD":
        flag("CNI_ARGS IP")

    cni_path = draw(st.sampled_from(["", None, "/nonexistent:"] if "path" in hostile
                                    else [str(places.cni_path)]))
    if cni_path is not None:
        case.env["CNI_PATH"] = cni_path
    if verb == "GC" and not cni_path:
        flag("CNI_PATH missing")

    def flag_config(reason: str) -> None:
        if configured:
            flag(reason)

    if "stdin" in hostile:
        case.stdin = draw(bad_stdin(places, flag_config))
    else:
        case.stdin = draw(config_text(places, verb, flag_config, "config" in hostile))
    return case


def bad_stdin(places: Places, flag: Any) -> st.SearchStrategy[bytes]:
    def flagged(reason: str) -> Any:
        def mark(data: bytes) -> bytes:
            flag(reason)
            return data

        return mark

    garbage = st.binary(max_size=80).map(flagged("stdin garbage"))
    wrong_shape = st.sampled_from([b"[1, 2]", b'"text"', b"5", b"null", b"true", b"", b"{",
                                   b"\xff\xfe{}", b"{}"]).map(flagged("stdin shape"))
    deep = st.integers(65, 200_000).flatmap(lambda n: st.sampled_from([
        b"[" * n, b'{"a": ' * n, b'{"cniVersion": "1.1.0", "x": ' + b"[" * n + b"]" * n + b"}",
    ])).map(flagged("stdin nested too deep"))
    conf = json.dumps(base_conf(places, "1.1.0")).encode()
    tails = st.sampled_from([
        (conf[:-1] + b', "mtu": ' + b"9" * 5000 + b"}", "mtu has too many digits"),
        (conf[:-1] + b', "mtu": 1e400}', "mtu is infinite"),
        (conf.replace(b'"type": "calico-py"', b'"type": "calico-py\xff"'), "stdin is not UTF-8"),
        (conf[: len(conf) // 2], "stdin cut short"),
    ]).map(lambda pair: flagged(pair[1])(pair[0]))
    return st.one_of(garbage, wrong_shape, deep, tails)


def config_text(places: Places, verb: str | None, flag: Any, hostile: bool) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        version = draw(st.sampled_from(["1.1.0", "1.1.0", *SUPPORTED_VERSIONS]))
        conf = base_conf(places, version)
        if verb == "CHECK" and version in ("0.3.0", "0.3.1"):
            flag("CHECK before 0.4.0")
        if verb in ("GC", "STATUS") and version != "1.1.0":
            flag(f"{verb} before 1.1.0")
        if verb == "CHECK" or draw(st.booleans()):
            conf["prevResult"] = json.loads(json.dumps(PREV))
        pool = MUTATIONS if hostile else VALID_MUTATIONS
        chosen = draw(st.lists(st.sampled_from(pool), min_size=int(hostile), max_size=3 if hostile else 1))
        by_path = {m[0]: m for m in chosen}  # one value per field
        for path, value, invalid_for in by_path.values():
            if _apply(conf, path, value) and verb in invalid_for:
                flag(f"config {'.'.join(path)} = {value!r}")
        return json.dumps(conf).encode()

    return build()


class Kernel:
    """The node's and the pod's state as netlink and /proc/sys tell it, read in-process."""

    def __init__(self, places: Places) -> None:
        self.places = places
        self.node = Rtnl()
        with netns.entered(places.pod):
            self.pod = Rtnl()

    def close(self) -> None:
        self.node.close()
        self.pod.close()

    def dataplane(self) -> dict[str, Any]:
        return {
            "node links": _links(self.node), "pod links": _links(self.pod),
            "node routes": [_routes(self.node, f) for f in (socket.AF_INET, socket.AF_INET6)],
            "node sysctls": {name: Path("/proc/sys/net", name).read_text().strip()
                             for name in NODE_SYSCTLS},
        }

    def store(self) -> dict[str, bytes]:
        found = {}
        for directory, _, files in os.walk(self.places.store):
            for name in files:
                path = Path(directory, name)
                found[str(path.relative_to(self.places.store))] = path.read_bytes()
        return found


def _links(handle: Rtnl) -> list[tuple[Any, ...]]:
    found = handle.request(ifinfmsg(), RTM_GETLINK, NLM_F_DUMP)
    return sorted((m["index"], m.get("ifname"), m["flags"], m.get("mtu"), m.get("address"))
                  for m in found)


def _routes(handle: Rtnl, family: int) -> list[tuple[Any, ...]]:
    return sorted(
        (m.get("table"), m["dst_len"], str(m.get("dst")), str(m.get("gateway")), m.get("oif"),
         m["proto"], m["type"], m["scope"])
        for m in handle.routes(family)
    )


@pytest.fixture
def places(root: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Places]:
    monkeypatch.setenv("CALICO_PY_VERDICTS", str(tmp_path / "verdicts"))
    monkeypatch.setenv("CALICO_PY_ATTACHMENT_LOCKS", str(tmp_path / "attachment-locks"))
    monkeypatch.setattr(logs, "FALLBACK_LOG_DIR", str(tmp_path / "internal"))
    (tmp_path / "cni-bin").mkdir()
    (tmp_path / "regular").write_text("")
    os.mkfifo(tmp_path / "fifo")
    with make_node() as node:
        settle(node)
        yield Places(node=node, pod=node.add_pod(), root=tmp_path, store=tmp_path / "store",
                     cni_path=tmp_path / "cni-bin", regular=tmp_path / "regular",
                     fifo=tmp_path / "fifo")
    logs.configure()  # let go of the run's log file


def settle(node: Node) -> None:
    """Wait for the uplink's IPv6 link-local address to leave DAD: its local routes
    appear only then, and must not count as a change a request made."""
    deadline = time.monotonic() + 15
    while node.exec("ip", "-6", "addr", "show", "tentative").stdout.strip():
        assert time.monotonic() < deadline, "the node's IPv6 addresses stay tentative"
        time.sleep(0.1)


def _alarm(*_: object) -> None:
    raise TimeoutError(f"a request took more than {CASE_SECONDS} s")


def serve(env: dict[str, str], stdin: bytes) -> tuple[int, str]:
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        return main.serve_text(env, stdin, "calico-py")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_output(case: Case, rc: int, text: str) -> dict[str, Any] | None:
    if rc == 0 and case.verb not in ("ADD", "VERSION"):
        assert text == "", text
        return None
    payload = json.loads(text)  # one JSON document, or this raises
    assert isinstance(payload, dict) and text.count("\n") == 1, text
    if rc != 0:
        assert rc == 1 and set(payload) == {"cniVersion", "code", "msg", "details"}, payload
        assert payload["code"] in KNOWN_CODES, payload
        assert all(isinstance(payload[k], str) for k in ("cniVersion", "msg", "details")), payload
    return payload


def assert_same(now: dict[str, Any], before: dict[str, Any], case: Case, output: str) -> None:
    changed = {key: (before.get(key), now.get(key)) for key in {*before, *now}
               if before.get(key) != now.get(key)}
    assert not changed, f"changed {changed} by {case.env} {case.stdin[:300]!r}: {output}"


def test_generated_requests(places: Places, capfd: pytest.CaptureFixture[str]) -> None:
    served = {"count": 0, "accepted": 0, "added": 0}
    with netns.entered(places.node.path):
        kernel = Kernel(places)
        try:
            # One ADD and DEL first: the store directory, its lock file and the
            # last-reserved hint exist from then on, as on a node in service.
            setup = Case(env={"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "fzsetup",
                              "CNI_NETNS": places.pod, "CNI_IFNAME": "eth0",
                              "CNI_PATH": str(places.cni_path)},
                         stdin=json.dumps(base_conf(places, "1.1.0")).encode(), verb="ADD")
            plane = kernel.dataplane()
            assert serve(setup.env, setup.stdin)[0] == 0
            assert serve({**setup.env, "CNI_COMMAND": "DEL"}, setup.stdin)[0] == 0
            assert kernel.dataplane() == plane
            baseline = {"plane": plane, "store": kernel.store()}

            def served_well(case: Case) -> None:
                served["count"] += 1
                rc, text = serve(case.env, case.stdin)
                payload = check_output(case, rc, text)
                if case.defects:
                    assert rc != 0, f"accepted although {case.defects}: {case.env} {case.stdin[:300]!r}"
                after = kernel.dataplane()
                if rc == 0 and case.verb == "ADD":
                    served["added"] += 1
                    assert payload is not None and payload.get("ips"), payload
                    done, out = serve({**case.env, "CNI_COMMAND": "DEL"}, case.stdin)
                    assert done == 0, out
                    assert_same(kernel.dataplane(), baseline["plane"], case, out)
                    baseline["store"] = kernel.store()  # only the last-reserved hint moved
                    return
                served["accepted"] += rc == 0
                assert_same(after, baseline["plane"], case, text)
                assert_same(kernel.store(), baseline["store"], case, text)

            first_failure: list[str] = []

            def one(case: Case) -> None:
                # A failed request may leave the node changed, and every later one would
                # then fail for that: the first failure is the one reported, every time,
                # so a replay fails the same way.
                if not first_failure:
                    try:
                        served_well(case)
                    except Exception as err:
                        first_failure.append(f"{type(err).__name__}: {err}")
                if first_failure:
                    raise AssertionError(first_failure[0])

            run = given(cases(places))(one)
            run = settings(max_examples=EXAMPLES, derandomize=SEED is None, database=None,
                           deadline=None, suppress_health_check=list(HealthCheck),
                           phases=(Phase.explicit, Phase.generate), report_multiple_bugs=False)(run)
            if SEED is not None:
                run = seed(int(SEED))(run)
            run()
        finally:
            kernel.close()
    assert capfd.readouterr().out == "", "something was written to stdout"
    with capfd.disabled():
        sys.stderr.write(f"\n{served['count']} requests: {served['added']} ADDs wired and undone, "
                         f"{served['accepted']} other requests answered 0\n")
    assert served["count"] >= EXAMPLES, served
    # Some requests must have gone all the way, or the generator only makes noise.
    assert served["added"] > 0 and served["accepted"] > 0, served
    assert not (places.root / "internal").exists(), "an internal error was recorded"
