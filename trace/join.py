"""Join the trace (the application's view) to a packet capture (the network's).

Every ``send`` and ``recv`` event in a trace says which bytes of which TCP
stream it carried: ``local``/``remote`` name the connection, ``dir`` the
direction and ``offset``/``len`` the range of stream offsets. A segment says
the same in sequence numbers (:mod:`trace.intervals`), so the join is
interval arithmetic per direction, and never depends on how the kernel cut
the stream into segments: coalesced sends, split sends and retransmissions
all come out right.

:func:`correlate` runs the join in named phases, each filling in declared
fields of :mod:`trace.results`:

1. :func:`pair_connections`: the capture's segments into connections, one
   per 4-tuple and SYN;
2. :func:`find_trace_ends` and :func:`attach_trace_ends`: the trace's
   connection ends onto those connections;
3. :func:`number_segments`: relative sequence numbers, stream offsets,
   kinds (SYN, data, FIN...), phases, retransmissions and reordering;
4. :func:`match_bytes`: events and segments to each other, and coverage
   both ways;
5. :func:`attribute_handshakes`: opening and closing segments to the
   ``connect``/``accept``/``close`` events;
6. :func:`link_data_connections`: each data connection to the PASV/EPSV
   reply or PORT/EPRT command that announced it and the RETR/STOR/LIST/NLST
   that used it;
7. :func:`name_repeated_events`: the trace events whose bytes each
   retransmission carried again.
"""

from __future__ import annotations

import bisect
import os

from .addresses import split_address
from .announce import TRANSFER_VERBS, announcement_of_event
from .intervals import gaps, offset_of, overlap, relative, union
from .pcap import as_segments
from .results import Connection, Correlation, Retransmission, TraceEnd
from .reader import time_order_key
from .tcp import ACK, FIN, RST, SYN, Segment

__all__ = ["correlate", "pair_connections", "find_trace_ends", "attach_trace_ends",
           "number_segments", "match_bytes", "attribute_handshakes", "link_data_connections",
           "name_repeated_events"]

_CONNECTION_EVENTS = ("connect", "accept", "send", "recv", "command", "reply", "close")


def correlate(events, packets) -> Correlation:
    """Join trace events to the TCP segments of a capture.

    ``events``: trace events (``trace.load(...)``, a list of dicts) or a log
    path. ``packets``: a pcap/pcapng path, scapy packets, or :class:`Segment`
    objects. Both are read once.
    """
    if isinstance(events, (str, os.PathLike)):
        from .reader import load
        events = load(events)
    result = Correlation(events=list(events), segments=list(as_segments(packets)))
    by_key = pair_connections(result)
    ends = find_trace_ends(result.events)
    attach_trace_ends(result, ends, by_key)
    for conn in result.connections:
        number_segments(result, conn)
    match_bytes(result, ends)
    attribute_handshakes(result)
    link_data_connections(result)
    _order_mappings(result)
    name_repeated_events(result)
    return result


def _key(a: tuple[str, int], b: tuple[str, int]):
    return (a, b) if a <= b else (b, a)


# --- 1. connections in the capture -------------------------------------------------

def pair_connections(result: Correlation) -> dict:
    """Group the segments into connections: one per 4-tuple, and a new one
    when the same client sends a SYN with a new ISN (a reused 4-tuple).
    Returns the connections by unordered address pair."""
    by_key: dict = {}
    first_syn: dict[int, int] = {}          # id(connection) -> its client's SYN seq
    for seg in result.segments:
        a, b = (seg.src, seg.sport), (seg.dst, seg.dport)
        conns = by_key.setdefault(_key(a, b), [])
        conn = conns[-1] if conns else None
        syn_only = seg.flags & SYN and not seg.flags & ACK
        reused = (conn is not None and syn_only and conn.client == a
                  and id(conn) in first_syn and first_syn[id(conn)] != seg.seq)
        if conn is None or reused:
            if seg.flags & SYN:
                client, server = (a, b) if syn_only else (b, a)
            else:
                # No SYN captured: guess that the higher port is the client's;
                # the trace corrects this when it knows who connected.
                client, server = (a, b) if seg.sport > seg.dport else (b, a)
            conn = Connection(client=client, server=server, start=seg.t)
            conns.append(conn)
            result.connections.append(conn)
        if syn_only and conn.client == a:
            first_syn.setdefault(id(conn), seg.seq)
        seg.connection = conn
        conn.segments.append(seg)
    return by_key


# --- 2. the trace's connection ends --------------------------------------------------

def find_trace_ends(events) -> dict[tuple, TraceEnd]:
    """The trace's connection ends, ``(pid, conn)`` -> :class:`TraceEnd`."""
    ends: dict[tuple, TraceEnd] = {}
    for ev in events:
        if ev.get("conn") is None or ev.get("type") not in _CONNECTION_EVENTS:
            continue
        if not ev.get("local") or not ev.get("remote"):
            continue
        key = (ev.get("pid"), ev.get("conn"))
        end = ends.get(key)
        if end is None:
            end = ends[key] = TraceEnd(pid=key[0], conn=key[1], role=ev.get("role"),
                                       channel=ev.get("channel"),
                                       local=split_address(ev["local"]),
                                       remote=split_address(ev["remote"]), t=ev.get("t", 0.0))
        if ev["type"] in ("connect", "accept"):
            end.kind = ev["type"]
        end.events.append(ev)
    return ends


def attach_trace_ends(result: Correlation, ends: dict, by_key: dict) -> None:
    """Put each trace end on the captured connection of its address pair
    (of several, the last one opened before the end's first event)."""
    cov = result.coverage
    for end in ends.values():
        candidates = by_key.get(_key(end.local, end.remote), [])
        if not candidates:
            # Its bytes are trace bytes the capture lacks: count them, so a
            # connection missing from the capture lowers the coverage.
            cov.uncaptured_ends.append(end.describe())
            for ev in end.events:
                if ev["type"] in ("send", "recv") and ev.get("len") and ev.get("offset") is not None:
                    cov.trace_bytes += ev["len"]
                    cov.unmatched_trace.append((ev, ev["offset"], ev["offset"] + ev["len"]))
            continue
        # The connection whose first segment came last before the end's first
        # event (the connect/accept event follows the handshake).
        conn = candidates[0]
        for c in candidates:
            if c.start is not None and c.start <= end.t + 1.0:
                conn = c
        cov.matched_ends += 1
        conn.ends.append((end.pid, end.conn, end.role))
        conn.channel = conn.channel or end.channel
        result.conn_of_end[end.key] = conn
        if not any(s.flags & SYN for s in conn.segments[:8]):
            # No SYN captured: the trace says who connected.
            if end.kind == "connect":
                conn.client, conn.server = end.local, end.remote
            elif end.kind == "accept":
                conn.client, conn.server = end.remote, end.local


# --- 3. sequence numbers, kinds and phases ------------------------------------------

def number_segments(result: Correlation, conn: Connection) -> None:
    """Relative numbers, stream offsets, kind, phase and retransmission of
    each of the connection's segments."""
    for seg in conn.segments:
        d = 0 if (seg.src, seg.sport) == conn.client else 1
        seg.direction = d
        mine, peer = conn.flows[d], conn.flows[1 - d]
        if seg.flags & SYN:
            if mine.from_syn and seg.seq == mine.isn:
                seg.retransmission = True            # the same SYN again
            elif mine.isn is None or not mine.from_syn:
                mine.isn, mine.from_syn = seg.seq, True
        if mine.isn is None:
            mine.isn, mine.late = (seg.seq - 1) & 0xFFFFFFFF, True
        seg.rel_seq = rel = relative(seg.seq, mine.isn, mine.high)
        if seg.flags & ACK and peer.isn is not None:
            seg.rel_ack = relative(seg.ack, peer.isn, peer.high)
        seg.offset = start = offset_of(rel, bool(seg.flags & SYN))
        end = start + seg.len
        mine.high = max(mine.high, end + (1 if seg.flags & FIN else 0) + 1)
        if seg.len:
            below_seen = start < mine.seen.end
            repeated = mine.seen.add(start, end)
            if repeated:
                seg.retransmission = True
                seg.repeated = sum(e - s for s, e in repeated)
                result.retransmissions += [Retransmission(seg, s, e) for s, e in repeated]
            else:
                seg.out_of_order = below_seen
            mine.ranges.append((start, end, seg))
        if seg.flags & FIN:
            if mine.fin_offset is not None:
                seg.retransmission = True
            mine.fin_offset = end
        seg.kind, seg.phase = _kind_and_phase(seg, conn, mine, peer)
        if seg.phase == "open":
            conn.open.append(seg)
        elif seg.phase == "close":
            conn.close.append(seg)
        if seg.flags & RST:
            conn.reset = True
    for d, flow in enumerate(conn.flows):
        if flow.late:
            result.notes.append(
                f"{conn.name}: the capture has no SYN from the "
                f"{'client' if d == 0 else 'server'}; its relative numbers count from its "
                "first captured segment and its bytes cannot be matched to the trace")


def _kind_and_phase(seg: Segment, conn: Connection, mine, peer) -> tuple[str, str]:
    if seg.flags & RST:
        return "rst", "close"
    if seg.flags & SYN:
        return ("syn-ack" if seg.flags & ACK else "syn"), "open"
    if seg.flags & FIN:
        return "fin", "close"
    if seg.len:
        return "data", "data"
    if seg.rel_seq == 1 and seg.rel_ack == 1 and not mine.ranges and mine.fin_offset is None \
            and not any(s.kind == "ack" and s.direction == seg.direction for s in conn.open):
        return "ack", "open"                     # the handshake's third segment
    if peer.fin_offset is not None and seg.rel_ack == peer.fin_offset + 2:
        return "ack", "close"                    # acknowledges the peer's FIN
    return "ack", "ack"


# --- 4. bytes: events <-> segments ------------------------------------------------------

def match_bytes(result: Correlation, ends: dict) -> None:
    """Link events and segments whose byte ranges overlap, per direction;
    count coverage both ways; and give each pure ACK the events whose last byte it acknowledges."""
    cov = result.coverage
    for conn in result.connections:
        if not conn.ends:
            cov.untraced_connections.append(conn)
            continue
        for d in (0, 1):
            _match_direction(result, conn, d, [ends[(pid, cid)] for pid, cid, _ in conn.ends])
        carriers = [_Carriers(conn.flows[0]), _Carriers(conn.flows[1])]
        for seg in conn.segments:
            if seg.kind == "ack" and seg.phase == "ack" and seg.rel_ack:
                seg.acks = carriers[1 - seg.direction].events_at(seg.rel_ack - 2)
    cov.retransmitted_segments = sum(1 for s in result.segments if s.repeated)


def _match_direction(result: Correlation, conn: Connection, d: int, ends: list) -> None:
    cov = result.coverage
    flow = conn.flows[d]
    flow_src = conn.client if d == 0 else conn.server
    ranges = sorted(flow.ranges, key=lambda r: (r[0], r[1]))
    merged = union((s, e) for s, e, _ in ranges)
    distinct = sum(e - s for s, e in merged)
    cov.retransmitted_bytes += sum(e - s for s, e, _ in ranges) - distinct
    cov.segment_bytes += distinct
    if flow.late:
        # Unaligned: nothing can be matched, everything is listed.
        for s, e in merged:
            cov.unmatched_segments.append(
                (conn, d, s, e, [r[2] for r in ranges if r[0] < e and s < r[1]]))
        merged, ranges = [], []
    # The events of each end on this direction: raw bytes (send/recv) and
    # their annotations (command/reply), each a disjoint layer.
    traced = []
    for end in ends:
        want_dir = "out" if end.local == flow_src else "in"
        raw, notes, eofs = [], [], []
        for ev in end.events:
            if ev.get("dir") != want_dir or ev.get("offset") is None:
                continue
            length = ev.get("len") or 0
            if ev["type"] in ("send", "recv"):
                if length:
                    raw.append((ev["offset"], ev["offset"] + length, ev))
                elif ev["type"] == "recv":
                    eofs.append(ev)
            elif ev["type"] in ("command", "reply"):
                notes.append((ev["offset"], ev["offset"] + length, ev))
        for layer in (raw, notes):
            layer.sort(key=lambda r: r[0])
            _attach(layer, ranges, result.by_event)
        traced.extend((s, e) for s, e, _ in raw)
        for s, e, ev in raw:
            cov.trace_bytes += e - s
            got = overlap(merged, s, e)
            cov.trace_matched += got
            if got < e - s:
                cov.unmatched_trace.extend((ev, gs, ge) for gs, ge in gaps(merged, s, e))
        for ev in eofs:                          # end of stream: the FIN it saw
            fins = [s for s in conn.segments if s.direction == d and s.flags & FIN
                    and s.offset + s.len == ev["offset"]]
            result.by_event.setdefault(id(ev), []).extend(fins)
            for s in fins:
                s.events.append(ev)
    traced = union(sorted(traced))
    for s, e in merged:
        cov.segment_matched += overlap(traced, s, e)
        for gs, ge in gaps(traced, s, e):
            segs = [r[2] for r in ranges if r[0] < ge and gs < r[1]]
            cov.unmatched_segments.append((conn, d, gs, ge, segs))


def _attach(layer, ranges, by_event) -> None:
    """Link each (start, end, event) of a disjoint, sorted layer to the
    segment ranges that overlap it."""
    if not layer or not ranges:
        return
    starts = [s for s, _, _ in layer]
    for s, e, seg in ranges:
        i = max(0, bisect.bisect_right(starts, s) - 1)
        while i < len(layer) and layer[i][0] < e:
            ls, le, ev = layer[i]
            if ls < e and s < le:
                seg.events.append(ev)
                by_event.setdefault(id(ev), []).append(seg)
            i += 1


class _Carriers:
    """Which segment of a flow carried a given stream offset, by bisection:
    first-time segments never overlap, so they sort into one list; what is
    only in a (partly new) retransmission is looked for among those."""

    def __init__(self, flow):
        firsts = sorted((s, e, seg) for s, e, seg in flow.ranges if not seg.repeated)
        self._starts = [s for s, _, _ in firsts]
        self._firsts = firsts
        self._repeats = [r for r in flow.ranges if r[2].repeated]

    def events_at(self, offset: int) -> list:
        """The events carried by the segment holding ``offset``."""
        i = bisect.bisect_right(self._starts, offset) - 1
        if i >= 0 and offset < self._firsts[i][1]:
            return list(self._firsts[i][2].events)
        for s, e, carrier in self._repeats:
            if s <= offset < e:
                return list(carrier.events)
        return []


# --- 5. opening and closing --------------------------------------------------------------

def attribute_handshakes(result: Correlation) -> None:
    """The handshake segments to each end's connect/accept, the teardown to its close."""
    for ev in result.events:
        if ev.get("type") not in ("connect", "accept", "close"):
            continue
        conn = result.connection_of(ev)
        if conn is None:
            continue
        segs = conn.open if ev["type"] in ("connect", "accept") else conn.close
        result.by_event.setdefault(id(ev), []).extend(segs)


# --- 6. what caused each data connection --------------------------------------------------

def link_data_connections(result: Correlation) -> None:
    """Attribute each data connection to its announcement and its command."""
    announcements = []      # (t, port, host, event, control end)
    transfers: dict = {}    # control end -> [command events], in order
    for ev in result.events:
        if ev.get("channel") != "control":
            continue
        end = (ev.get("pid"), ev.get("conn"))
        found = announcement_of_event(ev)
        if found:
            announcements.append((ev.get("t", 0.0), found[1], found[0], ev, end))
        if ev.get("type") == "command" and ev.get("verb") in TRANSFER_VERBS:
            transfers.setdefault(end, []).append(ev)
    if not announcements:
        return
    for conn in result.connections:
        if conn.channel == "control":
            continue
        opened = conn.open[0].t if conn.open else (conn.start or 0.0)
        best: dict = {}
        for t, port, host, ev, end in announcements:
            if port != conn.server[1] or t > opened + 1.0:
                continue
            if host is not None and host != conn.server[0] and host not in ("0.0.0.0", "::"):
                continue
            if end not in best or best[end][0] <= t:
                best[end] = (t, ev)
        if not best:
            continue
        if conn.channel is None:
            conn.channel = "data"
        for end, (t, ev) in best.items():
            conn.announced_by.append(ev)
            # The transfer command: the first on the same control connection
            # after the announcement (per-process sequence numbers order a
            # process's events even across the two directions).
            for cmd in transfers.get(end, []):
                if _order(cmd) > _order(ev):
                    conn.used_by.append(cmd)
                    break
        for ev in conn.causes:
            result.caused.setdefault(id(ev), []).append(conn)


def _order(ev):
    return (ev.get("seq", -1), ev.get("t", 0.0)) if ev.get("seq") is not None else (
        float("inf"), ev.get("t", 0.0))


# --- 7. what each retransmission repeats ------------------------------------------------

def name_repeated_events(result: Correlation) -> None:
    """The trace events whose bytes each retransmission carried again."""
    for repeat in result.retransmissions:
        repeat.events = [ev for ev in repeat.segment.events
                         if ev.get("len") and ev.get("offset") is not None
                         and ev["offset"] < repeat.end and repeat.start < ev["offset"] + ev["len"]]
        for ev in repeat.events:
            result.repeats_of_event.setdefault(id(ev), []).append(repeat)


# --- both sides of every mapping in a stable order --------------------------------------

def _dedup(items: list) -> list:
    seen, out = set(), []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out


def _order_mappings(result: Correlation) -> None:
    """Events in trace order, segments in capture order, each once."""
    for seg in result.segments:
        if len(seg.events) > 1:
            seg.events = _dedup(sorted(seg.events, key=time_order_key))
        if len(seg.acks) > 1:
            seg.acks = _dedup(sorted(seg.acks, key=time_order_key))
    for key, segs in result.by_event.items():
        if len(segs) > 1:
            result.by_event[key] = _dedup(sorted(segs, key=lambda s: s.number))
