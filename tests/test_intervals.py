"""The range arithmetic of the correlation, against a brute-force model:
sets of byte offsets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trace.intervals import SeenBytes, gaps, offset_of, overlap, relative, union

ranges = st.lists(st.tuples(st.integers(0, 200), st.integers(1, 40)).map(
    lambda t: (t[0], t[0] + t[1])), max_size=25)


def _bytes(intervals) -> set[int]:
    return {b for s, e in intervals for b in range(s, e)}


@settings(max_examples=300, deadline=None)
@given(ranges, st.integers(0, 240), st.integers(1, 60))
def test_union_overlap_and_gaps_agree_with_sets(intervals, s, n):
    merged = union(sorted(intervals))
    assert _bytes(merged) == _bytes(intervals)
    assert all(a[1] < b[0] for a, b in zip(merged, merged[1:]))        # disjoint, not touching
    window = set(range(s, s + n))
    assert overlap(merged, s, s + n) == len(window & _bytes(intervals))
    assert _bytes(gaps(merged, s, s + n)) == window - _bytes(intervals)


@settings(max_examples=300, deadline=None)
@given(ranges)
def test_seen_bytes_reports_exactly_the_repeats(intervals):
    seen, model = SeenBytes(), set()
    for s, e in intervals:
        repeated = seen.add(s, e)
        assert _bytes(repeated) == model & set(range(s, e))
        model |= set(range(s, e))
        assert len(seen) == len(model)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**40))
def test_relative_numbers_unwrap_near_the_highest_seen(isn, high):
    for step in (0, 1, 1000, 2**31 - 1, -1000):
        true = max(0, high + step)
        number = (isn + true) % 2**32
        assert relative(number, isn, high) == true


def test_stream_offset_o_is_relative_sequence_o_plus_1():
    assert offset_of(1, syn=False) == 0          # the first byte after the SYN
    assert offset_of(0, syn=True) == 0           # data on the SYN itself
    assert offset_of(1001, syn=False) == 1000
