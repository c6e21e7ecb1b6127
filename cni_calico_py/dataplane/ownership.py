"""Whose a host veth is: the only question DEL, GC and ADD's rollback ask before removing one.

ADD marks the host end with its attachment (naming.owner_mark, as the
link's alias) in the same message that sets it up, before it gives the pair
an address or a route and long before it answers. So:
- a marked veth is the marked attachment's, whoever else shares its name
  or its pod's namespace;
- an unmarked veth that is down is a pair an ADD made and never finished
  (it was killed between creating and configuring it): no request answered
  with it;
- an unmarked veth that is up predates the mark (made by an earlier
  version); it is an attachment's only while it routes an address that
  attachment holds, the rule used before the mark existed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from .naming import OWNER_MARK


class Whose(enum.Enum):
    MINE = "marked as this attachment's"
    OTHERS = "marked as another attachment's"
    UNFINISHED = "unmarked and down: an ADD that never finished made it"
    UNMARKED = "unmarked and up: made before pairs were marked"


def whose(alias: str, up: bool, mark: str) -> Whose:
    if alias == mark:
        return Whose.MINE
    if alias.startswith(OWNER_MARK):
        return Whose.OTHERS
    # Any other alias is an operator's, written over no mark of ours.
    return Whose.UNMARKED if up else Whose.UNFINISHED


def is_mine(found: Whose, routes_held: Callable[[], bool], *, unfinished: bool) -> bool:
    """Whether a veth found as `found` may be removed for this attachment.

    `routes_held` says whether the node routes an address the attachment
    holds through it (asked only for an unmarked veth). `unfinished` says
    whether an unfinished pair counts: yes where it was found through the
    pod's own interface (the attachment's netns and ifname), no where it
    was found by a name that another attachment's ADD may be finishing.
    """
    if found is Whose.MINE:
        return True
    if found is Whose.UNFINISHED:
        return unfinished
    if found is Whose.UNMARKED:
        return routes_held()
    return False
