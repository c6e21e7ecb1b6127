"""After the clusters (test_conformance, test_install, test_lifecycle) are gone, so is
everything they made.

pytest runs this module after those three: their module-scoped clusters have been
torn down by then.
"""

from __future__ import annotations

import contextlib

from tests.netns import wait_for

from .leftovers import MachineState


def test_no_process_namespace_mount_cgroup_or_rule_is_left(k8s_baseline: MachineState) -> None:
    # A process killed at the teardown may take a moment to be reaped.
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not MachineState.read().new_since(k8s_baseline), "the machine to be clean",
                 timeout=15, interval=0.5)
    assert MachineState.read().new_since(k8s_baseline) == {}
