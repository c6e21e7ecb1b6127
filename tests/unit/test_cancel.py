"""The caller-gone probe: checks raise error 11 once the caller has left, undo steps run on."""

from __future__ import annotations

import pytest

from cni_calico_py.core import cancel
from cni_calico_py.core.errors import CNIError, Code


@pytest.fixture
def gone():
    state = {"gone": False}
    cancel.watch(lambda: state["gone"])
    yield state
    cancel.watch(None)


def test_no_probe_never_cancels():
    cancel.watch(None)
    cancel.check("anything")
    assert not cancel.caller_gone()


def test_a_gone_caller_stops_the_request_with_11(gone):
    cancel.check("the lock was taken")
    gone["gone"] = True
    with pytest.raises(CNIError) as caught:
        cancel.check("the lock was taken")
    assert caught.value.code == Code.TRY_AGAIN_LATER
    assert "before the lock was taken" in caught.value.msg


def test_undo_runs_to_its_end_while_suspended(gone):
    gone["gone"] = True
    with cancel.suspended():
        cancel.check("an undo step")
    assert cancel.caller_gone()
