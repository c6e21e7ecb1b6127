"""The repairer: what ADD wired on this node comes back when something removes it.

It runs in the agent (a process of its own beside the workers, agent/repair.py)
and in the node daemon (a thread), asleep on rtnetlink notifications; both may
run on one node, as neither writes what is already there. What should exist comes from
the node's records, never from what happens to be in the kernel: every
address the node's stores hold (ipam.api.node_holdings) whose attachment
still has its marked host veth (the mark ADD sets, dataplane/naming.py)
should have:
- that veth up, with Calico's host settings (proxy_arp and the others);
- the node's `<address>/32 dev <veth> scope link` route;
- its block's blackhole (unless BIRD holds the node's blackholes).

A notification that can take one of these away (a route to a pod address or
a blackhole deleted, a marked veth down, proxy_arp turned off) starts a
check of what it concerns at once; the kernel drops a downed veth's routes
without telling, which the link's notification covers. Every CHECK_SECONDS
the whole node is compared, for the settings the kernel does not announce.

A repair never fights a request: it takes the attachment's lock without
waiting (a busy attachment is checked again shortly), reads the records
again under it, and acts only on a veth that still carries the attachment's
mark. A veth that is gone is not brought back: its pod is gone, or being
torn down. Nothing is written when nothing is missing, so the repairer's own
changes end in a quiet check. Each repair is logged, counted (a line to the
agent) and appended to the node's repair journal (core/repairs.py), which
`calico-py explain` reads.
"""

from __future__ import annotations

from .loop import Repairer

__all__ = ["Repairer"]
