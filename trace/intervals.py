"""The arithmetic that joins a trace to a capture: sequence numbers and ranges.

A trace event says which bytes of a TCP stream it carried as a range of
stream offsets, ``[offset, offset + len)``. A TCP segment says the same in
sequence numbers. Each direction numbers its bytes from its SYN's sequence
number, the ISN, modulo 2**32; the SYN itself takes one number, so

    relative sequence number = (seq - ISN) mod 2**32, unwrapped
    stream offset o          = relative sequence number o + 1

and joining the two is arithmetic on half-open ranges ``[start, end)``,
which never depends on how the kernel cut the stream into segments.
"""

from __future__ import annotations

import bisect

__all__ = ["relative", "offset_of", "union", "overlap", "gaps", "SeenBytes"]

_WRAP = 1 << 32


def relative(number: int, isn: int, high: int) -> int:
    """``number`` relative to ``isn``, unwrapped past 2**32 so that it lands
    within 2**31 of ``high``, the highest relative number seen so far (a
    transfer of more than 4 GiB wraps the 32-bit sequence numbers)."""
    rel = (number - isn) % _WRAP + (high - high % _WRAP)
    if rel - high > _WRAP // 2:
        rel -= _WRAP
    elif high - rel > _WRAP // 2:
        rel += _WRAP
    return rel


def offset_of(rel_seq: int, syn: bool) -> int:
    """Stream offset of a segment's first payload byte (a SYN's own number
    comes before its payload)."""
    return rel_seq - 1 + (1 if syn else 0)


def union(intervals) -> list[tuple[int, int]]:
    """Merge ``(start, end)`` intervals sorted by start."""
    out: list[list[int]] = []
    for s, e in intervals:
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1][1] = e
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _first_touching(merged, s: int) -> int:
    return max(0, bisect.bisect_right(merged, (s, float("inf"))) - 1) if merged else 0


def overlap(merged, s: int, e: int) -> int:
    """Bytes of ``[s, e)`` inside a merged interval list."""
    got = 0
    i = _first_touching(merged, s)
    while i < len(merged) and merged[i][0] < e:
        us, ue = merged[i]
        got += max(0, min(e, ue) - max(s, us))
        i += 1
    return got


def gaps(merged, s: int, e: int) -> list[tuple[int, int]]:
    """The parts of ``[s, e)`` not inside a merged interval list."""
    out, pos = [], s
    i = _first_touching(merged, s)
    while i < len(merged) and merged[i][0] < e:
        us, ue = merged[i]
        if ue > pos:
            if us > pos:
                out.append((pos, min(us, e)))
            pos = max(pos, ue)
        i += 1
    if pos < e:
        out.append((pos, e))
    return out


class SeenBytes:
    """The stream ranges one direction has carried so far, in capture order:
    :meth:`add` says which part of a new segment's range is a repeat."""

    def __init__(self):
        self._merged: list[tuple[int, int]] = []

    def add(self, s: int, e: int) -> list[tuple[int, int]]:
        """Record ``[s, e)``; return the parts of it that were seen before."""
        merged = self._merged
        if not merged or s > merged[-1][1]:          # the usual case: new bytes, in order
            merged.append((s, e))
            return []
        if s >= merged[-1][0]:                       # extends (or repeats) the last range
            last_s, last_e = merged[-1]
            repeated = [(s, min(e, last_e))] if s < last_e else []
            merged[-1] = (last_s, max(e, last_e))
            return repeated
        seen = [(max(s, us), min(e, ue)) for us, ue in merged[_first_touching(merged, s):]
                if us < e and s < ue]
        self._merged = union(sorted(merged + [(s, e)]))
        return seen

    def __len__(self) -> int:
        return sum(e - s for s, e in self._merged)

    @property
    def end(self) -> int:
        """Where the highest range seen so far ends (0 before any)."""
        return self._merged[-1][1] if self._merged else 0
