"""After the clusters (test_install, test_lifecycle) are gone, so is everything they made.

pytest runs this module after those two: their module-scoped clusters have been
torn down by then.
"""

from __future__ import annotations

from .leftovers import MachineState


def test_no_process_namespace_mount_cgroup_or_rule_is_left(k8s_baseline: MachineState) -> None:
    assert MachineState.read().new_since(k8s_baseline) == {}
