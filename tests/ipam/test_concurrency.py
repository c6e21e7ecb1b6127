"""Many real calico-py-ipam processes at once, and processes killed with SIGKILL mid-request."""

import json
import random
import signal
import subprocess
import time

import pytest

from tests.ipam.helpers import (
    ALL_ADDRESSES,
    address_of,
    blackholes,
    cni_env,
    in_parallel,
    netconf,
    records,
    stray_files,
)

pytestmark = pytest.mark.netns

# Lock waits here measure the shared 2-core machine more than the plugin (the
# bound itself is tested in test_process): a wide bound keeps these tests about
# distinct addresses and a sound store.
LOCK_TIMEOUT = 60


def adds(ipam, conf, ids):
    return [lambda c=c: (c, ipam("ADD", conf, c)) for c in ids]


def dels(ipam, conf, ids):
    return [lambda c=c: (c, ipam("DEL", conf, c)) for c in ids]


def holders(conf):
    return {address: r["containerID"] for address, r in records(conf).items()}


def test_64_parallel_adds_fill_the_block_then_64_parallel_dels_empty_it(ipam, node, tmp_path):
    conf = netconf(tmp_path, lockTimeoutSeconds=LOCK_TIMEOUT)
    ids = [f"pod{n}" for n in range(64)]
    outcomes = in_parallel(adds(ipam, conf, ids))
    failures = [(c, out, err) for c, (code, out, err) in outcomes if code != 0]
    assert failures == []
    got = {c: address_of(out) for c, (_, out, _) in outcomes}
    assert set(got.values()) == ALL_ADDRESSES  # 64 distinct: .0 and .63 included
    assert holders(conf) == {a: c for c, a in got.items()}
    assert len(blackholes(node)) == 1

    code, out, _ = ipam("ADD", conf, "pod64")
    assert code == 1 and out["code"] == 102 and "64 of 64 addresses in use" in out["msg"]
    code, out, _ = ipam("STATUS", conf)
    assert code == 1 and out["code"] == 50

    outcomes = in_parallel(dels(ipam, conf, ids))
    assert [(c, r) for c, r in outcomes if r[:2] != (0, None)] == []
    assert records(conf) == {}
    assert stray_files(conf) == []
    assert blackholes(node) == []
    assert ipam("STATUS", conf)[:2] == (0, None)


def test_parallel_adds_and_dels_mixed(ipam, node, tmp_path):
    conf = netconf(tmp_path, lockTimeoutSeconds=LOCK_TIMEOUT)
    leaving = [f"a{n}" for n in range(16)]
    assert all(r[1][0] == 0 for r in in_parallel(adds(ipam, conf, leaving)))

    # The first 16 leave while 32 others arrive, 8 of them twice at once (a runtime
    # retrying while the first ADD still runs): both answers must be the same address.
    arriving = [f"b{n}" for n in range(32)]
    jobs = dels(ipam, conf, leaving) + adds(ipam, conf, arriving) + adds(ipam, conf, arriving[:8])
    random.Random(7).shuffle(jobs)
    outcomes = in_parallel(jobs)
    assert [(c, r) for c, r in outcomes if r[0] != 0] == []
    answers: dict[str, set[str]] = {}
    for c, r in outcomes:
        if c in arriving:
            answers.setdefault(c, set()).add(address_of(r[1]))
    assert all(len(a) == 1 for a in answers.values()), answers
    got = {c: a.pop() for c, a in answers.items()}
    assert holders(conf) == {a: c for c, a in got.items()}  # 32 distinct, nothing else
    assert len(blackholes(node)) == 1

    assert all(r[1][:2] == (0, None) for r in in_parallel(dels(ipam, conf, arriving)))
    assert records(conf) == {} and stray_files(conf) == [] and blackholes(node) == []


def _start(node, ipam_exe, command, conf, container_id):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           **cni_env(command, container_id, netns=node.path if command == "ADD" else "")}
    proc = subprocess.Popen(["ip", "netns", "exec", node.name, ipam_exe], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(conf).encode())
    proc.stdin.close()
    proc.stdin = None  # written in full: communicate() must not touch it again
    return proc


def _finish(proc, kill_at):
    """Kill `proc` at monotonic time `kill_at` unless done (None: let it finish).

    Returns (killed, completed, result JSON)."""
    killed = False
    if kill_at is not None:
        try:
            proc.wait(timeout=max(0.0, kill_at - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            killed = True
    out, _ = proc.communicate(timeout=60)
    completed = proc.returncode == 0
    return killed and not completed, completed, json.loads(out) if completed and out else None


def test_sigkill_at_random_moments_never_corrupts_the_store(node, ipam_exe, ipam, tmp_path):
    conf = netconf(tmp_path, lockTimeoutSeconds=LOCK_TIMEOUT)
    rng = random.Random(4)
    ids = [f"k{n}" for n in range(24)]
    # What each container holds as far as the runtime knows; None: unknown after a kill.
    known: dict[str, str | None] = {}
    typical = 0.5  # seconds a request takes under this batch's load, learnt as we go

    kills = rounds = 0
    while kills < 48:
        rounds += 1
        assert rounds < 40, f"only {kills} kills in {rounds} rounds"
        started = time.monotonic()
        procs = []
        for c in rng.sample(ids, 6):
            command = "ADD" if rng.random() < 0.6 else "DEL"
            # Most kills land late in the run, where the lock is held and files are written.
            kill_at = started + rng.uniform(0.4, 1.1) * typical if rng.random() < 0.8 else None
            procs.append((c, command, kill_at, _start(node, ipam_exe, command, conf, c)))
        for c, command, kill_at, proc in procs:
            killed, completed, out = _finish(proc, kill_at)
            kills += killed
            if killed:
                known[c] = None
            elif not completed:
                pytest.fail(f"{command} {c} failed without being killed: {out}")
            elif command == "ADD":
                address: str | None = address_of(out)
                assert known.get(c) in (None, address), "an ADD retry must return the same address"
                known[c] = address
            else:
                known.pop(c, None)
            if not killed:
                typical = 0.7 * typical + 0.3 * (time.monotonic() - started)
        # After every round, whatever was killed where, the store is sound.
        held = records(conf)  # every record parses as JSON
        owners = [(r["containerID"], r["ifname"]) for r in held.values()]
        assert len(owners) == len(set(owners)), held  # nobody holds two addresses
        for c, address in known.items():
            if address is not None:
                assert held[address]["containerID"] == c  # no address held by two

    # GC with the attachments the runtime knows to be live restores exactly that set.
    live = {c: a for c, a in known.items() if a is not None}
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": c, "ifname": "eth0"}
                                                     for c in live]}
    assert ipam("GC", gc_conf)[:2] == (0, None)
    assert holders(conf) == {a: c for c, a in live.items()}
    assert stray_files(conf) == []
    assert len(blackholes(node)) == (1 if live else 0)
    for c in live:
        assert ipam("DEL", conf, c)[:2] == (0, None)
    assert records(conf) == {} and blackholes(node) == []
