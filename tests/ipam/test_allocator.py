from ipaddress import ip_address as ip
from itertools import islice

from ipam.allocator import Span, candidates

BLOCK = [Span(ip("192.168.97.0"), ip("192.168.97.63"))]


def as_text(addresses):
    return [str(a) for a in addresses]


def test_fresh_block_starts_at_the_first_address_and_covers_all_64():
    order = as_text(candidates(BLOCK, None))
    assert len(order) == 64 == len(set(order))
    assert order[0] == "192.168.97.0"
    assert order[-1] == "192.168.97.63"


def test_starts_after_the_last_reserved_and_wraps_around():
    order = as_text(candidates(BLOCK, ip("192.168.97.5")))
    assert order[:2] == ["192.168.97.6", "192.168.97.7"]
    assert order[57:59] == ["192.168.97.63", "192.168.97.0"]
    # The last one handed out comes last: a released address is not reused at once.
    assert order[-1] == "192.168.97.5"
    assert len(set(order)) == 64


def test_last_reserved_at_the_end_of_the_range_wraps_to_the_start():
    assert next(candidates(BLOCK, ip("192.168.97.63"))) == ip("192.168.97.0")


def test_last_reserved_outside_every_span_starts_from_the_beginning():
    assert next(candidates(BLOCK, ip("10.0.0.1"))) == ip("192.168.97.0")
    assert next(candidates(BLOCK, ip("fd00::1"))) == ip("192.168.97.0")


def test_several_spans_are_walked_in_order_and_wrapped():
    spans = [Span(ip("10.0.0.10"), ip("10.0.0.12")), Span(ip("10.0.1.0"), ip("10.0.1.1"))]
    assert as_text(candidates(spans, ip("10.0.0.11"))) == [
        "10.0.0.12", "10.0.1.0", "10.0.1.1", "10.0.0.10", "10.0.0.11"]
    assert as_text(candidates(spans, ip("10.0.0.12"))) == [
        "10.0.1.0", "10.0.1.1", "10.0.0.10", "10.0.0.11", "10.0.0.12"]
    assert as_text(candidates(spans, ip("10.0.1.1"))) == [
        "10.0.0.10", "10.0.0.11", "10.0.0.12", "10.0.1.0", "10.0.1.1"]


def test_ipv6_block():
    spans = [Span(ip("fd00:97::"), ip("fd00:97::3f"))]
    order = list(candidates(spans, ip("fd00:97::3f")))
    assert order[0] == ip("fd00:97::") and len(set(order)) == 64


def test_huge_ranges_are_walked_lazily():
    spans = [Span(ip("fd00::"), ip("fd00::ffff:ffff:ffff:ffff"))]
    assert as_text(islice(candidates(spans, ip("fd00::7")), 2)) == ["fd00::8", "fd00::9"]


def test_no_spans_no_candidates():
    assert list(candidates([], None)) == []


def test_single_address_span():
    spans = [Span(ip("10.0.0.1"), ip("10.0.0.1"))]
    assert as_text(candidates(spans, ip("10.0.0.1"))) == ["10.0.0.1"]
    assert as_text(candidates(spans, None)) == ["10.0.0.1"]
