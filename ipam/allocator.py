"""The order in which a range set's addresses are tried: pure, no disk.

Round-robin: start right after the address handed out last and wrap around,
so an address just released is the last one to be handed out again (a
container restarting elsewhere must not find its old address reused at once).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

from cni_calico_py.core.results import IPAddress


class Span(NamedTuple):
    """Inclusive bounds of one range, both of the same family."""

    first: IPAddress
    last: IPAddress


def candidates(spans: Sequence[Span], last_reserved: IPAddress | None) -> Iterator[IPAddress]:
    """Every address of `spans` exactly once, starting after `last_reserved`.

    Without a usable `last_reserved` (none yet, or outside every span after a
    config change) the order starts at the first span's first address.
    """
    if not spans:
        return
    start_span, start = 0, int(spans[0].first)
    for index, span in enumerate(spans):
        if last_reserved is not None and _within(span, last_reserved):
            if int(last_reserved) < int(span.last):
                start_span, start = index, int(last_reserved) + 1
            else:
                start_span = (index + 1) % len(spans)
                start = int(spans[start_span].first)
            break
    for step in range(len(spans)):
        span = spans[(start_span + step) % len(spans)]
        low = start if step == 0 else int(span.first)
        yield from _addresses(span, low, int(span.last))
    # The part of the starting span before the starting point comes last.
    first_span = spans[start_span]
    yield from _addresses(first_span, int(first_span.first), start - 1)


def _within(span: Span, address: IPAddress) -> bool:
    return address.version == span.first.version and int(span.first) <= int(address) <= int(span.last)


def _addresses(span: Span, low: int, high: int) -> Iterator[IPAddress]:
    make = type(span.first)
    for value in range(low, high + 1):
        yield make(value)
