"""Join the trace (the application's view) to a packet capture (the network's).

Every ``send`` and ``recv`` event in a trace says which bytes of which TCP
stream it carried: ``local``/``remote`` name the connection, ``dir`` the
direction and ``offset``/``len`` the range of stream offsets. A TCP segment
says the same thing in sequence numbers: its payload starts at relative
sequence number ``seq - ISN`` of its direction, where the ISN is the sequence
number of that direction's SYN. Stream offset ``o`` is relative sequence
number ``o + 1`` (the SYN itself takes number 0), so joining the two is
interval arithmetic per direction, and never depends on how the kernel cut
the stream into segments: coalesced sends, split sends and retransmissions
all come out right.

:func:`correlate` does the join. It returns a :class:`Correlation` that maps
each event to the segments carrying its bytes and each segment to the events
whose bytes it carries; it attributes SYN, FIN, RST and pure ACK segments to
the opening or closing of their connection (and, for a data connection, to
the PASV/EPSV reply or PORT/EPRT command that announced it and to the
RETR/STOR/LIST/NLST that used it); and it measures coverage both ways.

Captures are read with :func:`read_segments`, which takes pcap or pcapng
files from any tool (this kit's capture, tcpdump, Wireshark, dumpcap) and
parses only the IP and TCP headers, so a capture of a large transfer reads
quickly and a capture made with a small snap length still correlates.
"""

from __future__ import annotations

import bisect
import os
import re
import socket
import struct
import sys
import types
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .addresses import join_address, normal_host as _normal_host, split_address
from .announce import TRANSFER_VERBS, parse_announcement, announcement_of_event as _announcement_of

__all__ = [
    "Segment", "Connection", "Coverage", "Correlation", "correlate",
    "read_segments", "segments_from_packets", "parse_frame", "flag_names",
    "parse_announcement", "split_address", "CaptureFileError",
]

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
_FLAG_NAMES = ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"),
               (URG, "URG"), (ECE, "ECE"), (CWR, "CWR"))
_MASK = 0xFFFFFFFF

class CaptureFileError(ValueError):
    """A capture file cannot be read; the message is one line for the user."""


def flag_names(flags: int) -> str:
    """``"SYN,ACK"`` for the TCP flags byte 0x12 (empty string for none)."""
    return ",".join(name for bit, name in _FLAG_NAMES if flags & bit)


# --- segments: the packets, reduced to what correlation needs -----------------

class Segment:
    """One TCP segment from a capture.

    Read from the capture: ``number`` (frame number, 1-based, as Wireshark
    counts), ``t`` (epoch seconds), ``src``/``sport``, ``dst``/``dport``,
    ``seq``/``ack`` (absolute), ``flags`` (the TCP flags byte), ``len``
    (payload bytes, from the IP length, so a truncated capture still counts
    right) and ``payload`` (the captured payload bytes, possibly truncated).

    Filled in by :func:`correlate`: ``connection``, ``direction`` (0: the
    client's, 1: the server's), ``rel_seq``/``rel_ack`` (relative sequence
    and acknowledgement numbers, Wireshark style), ``offset`` (stream offset
    of the first payload byte), ``kind`` (``syn``, ``syn-ack``, ``ack``,
    ``data``, ``fin``, ``rst``), ``phase`` (``open``, ``data``, ``ack``,
    ``close``), ``events`` (events whose bytes it carries, or, for a FIN,
    the zero-length ``recv`` that saw it), ``acks`` (for a pure ACK, the
    events whose last byte it acknowledges) and ``retransmission``.
    """

    __slots__ = ("number", "t", "src", "sport", "dst", "dport", "seq", "ack", "flags",
                 "len", "payload", "connection", "direction", "rel_seq", "rel_ack",
                 "offset", "kind", "phase", "events", "acks", "retransmission")

    def __init__(self, number, t, src, sport, dst, dport, seq, ack, flags, length,
                 payload=b""):
        self.number, self.t = number, t
        self.src, self.sport, self.dst, self.dport = src, sport, dst, dport
        self.seq, self.ack, self.flags, self.len = seq, ack, flags, length
        self.payload = payload
        self.connection = None
        self.direction = None
        self.rel_seq = self.rel_ack = self.offset = None
        self.kind = self.phase = None
        self.events: list = []
        self.acks: list = []
        self.retransmission = False

    @property
    def flag_text(self) -> str:
        return flag_names(self.flags)

    @property
    def source(self) -> str:
        return join_address(self.src, self.sport)

    @property
    def destination(self) -> str:
        return join_address(self.dst, self.dport)

    def describe(self) -> str:
        """One line, tcpdump-like: ``#5 127.0.0.1:40000 > 127.0.0.1:2121 [PSH,ACK] seq=1 ack=1 len=6``."""
        seq = self.rel_seq if self.rel_seq is not None else self.seq
        ack = self.rel_ack if self.rel_ack is not None else self.ack
        text = f"#{self.number} {self.source} > {self.destination} [{self.flag_text}] seq={seq}"
        if self.flags & ACK:
            text += f" ack={ack}"
        return text + f" len={self.len}"

    def __repr__(self):
        return f"<Segment {self.describe()}>"


def parse_frame(frame: bytes, linktype: int):
    """Parse one captured frame; returns the TCP header fields or ``None``.

    The result is ``(src, sport, dst, dport, seq, ack, flags, payload_len,
    payload)``. Link types: Ethernet (1, with 802.1Q tags), BSD loopback
    (0 and 108, what macOS ``lo0`` gives), raw IP (101, 12, 14, 228, 229)
    and Linux cooked capture (113, 276, what ``tcpdump -i any`` gives).
    """
    if linktype == 1:                                         # Ethernet
        pos = 12
        ethertype = int.from_bytes(frame[12:14], "big")
        while ethertype in (0x8100, 0x88A8, 0x9100):          # VLAN tags
            pos += 4
            ethertype = int.from_bytes(frame[pos:pos + 2], "big")
        pos += 2
    elif linktype in (0, 108):                                # BSD/macOS loopback
        if len(frame) < 4:
            return None
        family = struct.unpack("<I" if linktype == 0 else ">I", frame[:4])[0]
        if linktype == 0 and family > 0xFFFF:                 # written on a big-endian host
            family = struct.unpack(">I", frame[:4])[0]
        ethertype = 0x0800 if family == 2 else 0x86DD if family in (10, 24, 28, 30) else 0
        pos = 4
    elif linktype in (101, 12, 14, 228, 229):                 # raw IP
        pos = 0
        ethertype = 0x0800 if frame[:1] and frame[0] >> 4 == 4 else 0x86DD
    elif linktype == 113:                                     # Linux cooked (SLL)
        ethertype, pos = int.from_bytes(frame[14:16], "big"), 16
    elif linktype == 276:                                     # Linux cooked v2 (SLL2)
        ethertype, pos = int.from_bytes(frame[0:2], "big"), 20
    else:
        return None
    return _parse_ip(frame, pos, ethertype)


def _parse_ip(frame: bytes, pos: int, ethertype: int):
    if ethertype == 0x0800:
        if len(frame) < pos + 20:
            return None
        vihl = frame[pos]
        ihl = (vihl & 0x0F) * 4
        total = int.from_bytes(frame[pos + 2:pos + 4], "big")
        frag = int.from_bytes(frame[pos + 6:pos + 8], "big")
        if frame[pos + 9] != 6 or frag & 0x1FFF:              # not TCP, or a later fragment
            return None
        src = socket.inet_ntop(socket.AF_INET, frame[pos + 12:pos + 16])
        dst = socket.inet_ntop(socket.AF_INET, frame[pos + 16:pos + 20])
        if total == 0:                                        # TSO: length left to the NIC
            total = len(frame) - pos
        tcp = pos + ihl
        ip_end = pos + total
    elif ethertype == 0x86DD:
        if len(frame) < pos + 40:
            return None
        plen = int.from_bytes(frame[pos + 4:pos + 6], "big")
        nxt = frame[pos + 6]
        src = _normal_host(socket.inet_ntop(socket.AF_INET6, frame[pos + 8:pos + 24]))
        dst = _normal_host(socket.inet_ntop(socket.AF_INET6, frame[pos + 24:pos + 40]))
        tcp = pos + 40
        ip_end = tcp + (plen if plen else len(frame) - tcp)
        while nxt in (0, 43, 60):                             # hop-by-hop, routing, dest opts
            if len(frame) < tcp + 2:
                return None
            nxt, tcp = frame[tcp], tcp + (frame[tcp + 1] + 1) * 8
        if nxt != 6:
            return None
    else:
        return None
    if len(frame) < tcp + 20:
        return None
    sport, dport, seq, ack, off, flags = struct.unpack_from("!HHIIBB", frame, tcp)
    data = tcp + (off >> 4) * 4
    length = max(0, ip_end - data)
    return src, sport, dst, dport, seq, ack, flags, length, frame[data:ip_end]


# How many payload bytes a segment read from a file keeps (enough for any
# control-channel line; a capture of a large transfer is not held in memory).
PAYLOAD_KEPT = 1024


def read_segments(path: str | os.PathLike, keep_payload: int = PAYLOAD_KEPT) -> Iterator[Segment]:
    """Yield the TCP segments of a pcap or pcapng file, in capture order.

    Only the IP and TCP headers are parsed (no scapy dissection), so reading
    is fast. Frames that are not TCP are skipped but still counted in the
    frame numbers, which therefore match Wireshark's. Each segment keeps at
    most ``keep_payload`` bytes of its payload (``len`` is always whole).
    """
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapNgReader, RawPcapReader

    name = os.fspath(path)
    try:
        reader = RawPcapReader(name)                # picks the pcapng reader by magic
    except FileNotFoundError:
        raise CaptureFileError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise CaptureFileError(f"{name}: is a directory, not a capture") from None
    except OSError as err:
        raise CaptureFileError(f"{name}: {err.strerror or err}") from None
    except Scapy_Exception:
        with open(name, "rb") as f:
            head = f.read(64)
        what = "a trace log (JSON Lines)" if head.lstrip().startswith(b"{") else \
            "empty" if not head else "something else"
        raise CaptureFileError(f"{name}: not a pcap or pcapng capture (it is {what})") from None
    try:
        is_ng = isinstance(reader, RawPcapNgReader)
        linktype = getattr(reader, "linktype", None)
        nano = getattr(reader, "nano", False)
        number = 0
        while True:
            try:
                frame, meta = reader._read_packet(size=1 << 20)
            except EOFError:
                break
            if frame is None:
                continue
            number += 1
            if is_ng:
                lt = meta.linktype
                t = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
            else:
                lt = linktype
                t = meta.sec + meta.usec / (1e9 if nano else 1e6)
            parsed = parse_frame(frame, lt)
            if parsed is None:
                continue
            src, sport, dst, dport, seq, ack, flags, length, payload = parsed
            if len(payload) > keep_payload:
                payload = payload[:keep_payload]
            yield Segment(number, t, src, sport, dst, dport, seq, ack, flags, length, payload)
    finally:
        reader.close()


def segments_from_packets(packets) -> Iterator[Segment]:
    """Segments from scapy packets (a list, a ``PacketList`` or ``rdpcap`` result)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    for number, pkt in enumerate(packets, 1):
        if IP in pkt:
            raw, ethertype = bytes(pkt[IP]), 0x0800
        elif IPv6 in pkt:
            raw, ethertype = bytes(pkt[IPv6]), 0x86DD
        else:
            continue
        if TCP not in pkt:
            continue
        parsed = _parse_ip(raw, 0, ethertype)
        if parsed is None:
            continue
        src, sport, dst, dport, seq, ack, flags, length, payload = parsed
        yield Segment(number, float(pkt.time), src, sport, dst, dport, seq, ack, flags,
                      length, payload)


def _as_segments(packets) -> Iterator[Segment]:
    if isinstance(packets, (str, os.PathLike)):
        return read_segments(packets)
    packets = iter(packets)
    try:
        first = next(packets)
    except StopIteration:
        return iter(())

    def chained():
        yield first
        yield from packets
    if isinstance(first, Segment):
        return chained()
    return segments_from_packets(chained())


# --- the result ----------------------------------------------------------------

@dataclass(eq=False)
class Connection:
    """One TCP connection seen in the capture and/or the trace.

    ``client`` and ``server`` are ``(host, port)``: the client is the end
    that sent the SYN (or, with no SYN captured, the end the trace says
    connected). ``ends`` lists the trace's connection ends on it as
    ``(pid, conn, role)``. ``segments`` are its segments in capture order;
    ``open``/``close`` the handshake and teardown segments. For a data
    connection, ``announced_by`` holds the PASV/EPSV replies or PORT/EPRT
    commands that announced it and ``used_by`` the transfer commands
    (RETR, STOR, LIST, NLST) that used it, one per traced end.
    """

    client: tuple[str, int]
    server: tuple[str, int]
    channel: str | None = None
    ends: list = field(default_factory=list)
    segments: list = field(default_factory=list)
    open: list = field(default_factory=list)
    close: list = field(default_factory=list)
    announced_by: list = field(default_factory=list)
    used_by: list = field(default_factory=list)
    isn: list = field(default_factory=lambda: [None, None])
    syn_seen: list = field(default_factory=lambda: [False, False])
    fin_seen: list = field(default_factory=lambda: [False, False])
    reset: bool = False
    start: float | None = None

    @property
    def name(self) -> str:
        return f"{join_address(*self.client)} > {join_address(*self.server)}"

    @property
    def causes(self) -> list:
        """The control-channel events that caused this data connection."""
        return self.announced_by + self.used_by

    def has_handshake(self) -> bool:
        kinds = {s.kind for s in self.open}
        return {"syn", "syn-ack"} <= kinds

    def fins(self) -> list:
        """Which directions sent a FIN: ``[client_sent, server_sent]``."""
        return list(self.fin_seen)


@dataclass
class Coverage:
    """How much of each side the other accounts for.

    ``trace_bytes``: bytes of ``send``/``recv`` events on connections (a byte
    seen by both traced ends counts once per end); ``trace_matched``: those
    found in segment payloads. ``segment_bytes``: distinct payload bytes in
    the capture's segments on traced connections (a retransmitted byte counts
    once); ``segment_matched``: those found in trace events.
    ``unmatched_trace`` lists ``(event, start, end)`` stream ranges no
    segment carried; ``unmatched_segments`` lists ``(connection, direction,
    start, end, [segments])`` ranges no event accounts for.
    ``untraced_connections`` are connections in the capture the trace never
    mentions (their bytes are not in the figures), ``uncaptured_ends`` trace
    connection ends with no connection in the capture.
    """

    trace_bytes: int = 0
    trace_matched: int = 0
    segment_bytes: int = 0
    segment_matched: int = 0
    retransmitted_bytes: int = 0
    unmatched_trace: list = field(default_factory=list)
    unmatched_segments: list = field(default_factory=list)
    untraced_connections: list = field(default_factory=list)
    uncaptured_ends: list = field(default_factory=list)

    @property
    def trace_fraction(self) -> float:
        return self.trace_matched / self.trace_bytes if self.trace_bytes else 1.0

    @property
    def segment_fraction(self) -> float:
        return self.segment_matched / self.segment_bytes if self.segment_bytes else 1.0

    def summary(self) -> str:
        lines = [
            f"trace bytes found in segments: {self.trace_matched} of {self.trace_bytes} "
            f"({100 * self.trace_fraction:.2f}%)",
            f"segment payload bytes found in the trace: {self.segment_matched} of "
            f"{self.segment_bytes} ({100 * self.segment_fraction:.2f}%)",
        ]
        if self.retransmitted_bytes:
            lines.append(f"retransmitted payload bytes (counted once): {self.retransmitted_bytes}")
        for event, start, end in self.unmatched_trace[:20]:
            lines.append(f"  not in the capture: {event.get('role', '?')} {event.get('type')} "
                         f"conn {event.get('conn')} {event.get('dir', '')} bytes {start}..{end}")
        for conn, direction, start, end, segs in self.unmatched_segments[:20]:
            nums = ",".join(f"#{s.number}" for s in segs[:5]) + (",..." if len(segs) > 5 else "")
            lines.append(f"  not in the trace: {conn.name} {'c>s' if direction == 0 else 's>c'} "
                         f"bytes {start}..{end} in {nums}")
        for conn in self.untraced_connections:
            lines.append(f"  connection not in the trace: {conn.name}")
        for end in self.uncaptured_ends:
            lines.append(f"  trace connection not in the capture: {end}")
        return "\n".join(lines)


class Correlation:
    """The result of :func:`correlate`."""

    def __init__(self):
        self.events: list = []
        self.segments: list[Segment] = []
        self.connections: list[Connection] = []
        self.coverage = Coverage()
        self.notes: list[str] = []
        self._by_event: dict[int, list[Segment]] = {}
        self._conn_of_end: dict = {}
        self._caused: dict[int, list[Connection]] = {}

    def segments_for(self, event) -> list[Segment]:
        """The segments carrying this event's bytes (for a zero-length recv:
        the FIN it saw; for connect/accept/close: the handshake/teardown)."""
        return self._by_event.get(id(event), [])

    def connections_caused_by(self, event) -> list[Connection]:
        """The data connections a PASV/EPSV reply, PORT/EPRT command or
        transfer command (RETR, STOR, LIST, NLST) caused; their handshake and
        teardown segments are ``conn.open`` and ``conn.close``."""
        return self._caused.get(id(event), [])

    def events_for(self, segment: Segment) -> list:
        return segment.events

    def connection_of(self, event) -> Connection | None:
        return self._conn_of_end.get((event.get("pid"), event.get("conn")))

    def summary(self) -> str:
        text = self.coverage.summary()
        data = [c for c in self.connections if c.channel == "data"]
        if data:
            ok = sum(1 for c in data if c.has_handshake() and all(c.fin_seen) and c.causes)
            text += (f"\ndata connections: {len(data)}; with handshake, FINs from both sides "
                     f"and a cause: {ok}")
            reset = sum(1 for c in data if c.reset)
            if reset:
                text += f"; reset: {reset}"
        for note in self.notes:
            text += f"\nnote: {note}"
        return text


# --- correlation ---------------------------------------------------------------

class _Direction:
    """Relative numbering and segment ranges for one direction of one connection."""

    __slots__ = ("isn", "from_syn", "high", "sent", "ranges", "fin_offset")

    def __init__(self):
        self.isn = None
        self.from_syn = False
        self.high = 0              # highest relative number seen, for unwrapping
        self.sent = 0              # highest payload offset seen, for retransmissions
        self.ranges = []           # (start, end, segment) payload stream offsets
        self.fin_offset = None

    def relative(self, number: int) -> int:
        rel = (number - self.isn) & _MASK
        base = self.high - (self.high & _MASK)
        rel += base
        if rel - self.high > 1 << 31:
            rel -= 1 << 32
        elif self.high - rel > 1 << 31:
            rel += 1 << 32
        return rel


def _key(a: tuple[str, int], b: tuple[str, int]):
    return (a, b) if a <= b else (b, a)


def _is_path(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def correlate(events, packets) -> Correlation:
    """Join trace events to the TCP segments of a capture.

    ``events``: trace events (``trace.load(...)``, a list of dicts) or a log
    path. ``packets``: a pcap/pcapng path, scapy packets, or :class:`Segment`
    objects. Both are read once.
    """
    if _is_path(events):
        from .reader import load
        events = load(events)
    result = Correlation()
    result.events = events = list(events)
    segments = result.segments = list(_as_segments(packets))

    # 1. Connections in the capture: one per 4-tuple and SYN (a reused
    #    4-tuple with a new SYN is a new connection).
    by_key: dict = {}
    state: dict[int, list[_Direction]] = {}
    for seg in segments:
        a, b = (seg.src, seg.sport), (seg.dst, seg.dport)
        key = _key(a, b)
        conns = by_key.setdefault(key, [])
        conn = conns[-1] if conns else None
        syn_only = seg.flags & SYN and not seg.flags & ACK
        if conn is None or (syn_only and conn.syn_seen[0] and seg.seq != conn.isn[0]
                            and conn.client == a):
            if seg.flags & SYN:
                client, server = (a, b) if syn_only else (b, a)
            else:
                # No SYN captured: guess that the higher port is the client's;
                # the trace corrects this below when it knows who connected.
                client, server = (a, b) if seg.sport > seg.dport else (b, a)
            conn = Connection(client=client, server=server, start=seg.t)
            conns.append(conn)
            result.connections.append(conn)
            state[id(conn)] = [_Direction(), _Direction()]
        seg.connection = conn
        conn.segments.append(seg)

    # 2. The trace's connection ends, matched to captured connections.
    ends: dict = {}
    for ev in events:
        if ev.get("conn") is None or ev.get("type") not in (
                "connect", "accept", "send", "recv", "command", "reply", "close"):
            continue
        if not ev.get("local") or not ev.get("remote"):
            continue
        end = (ev.get("pid"), ev.get("conn"))
        info = ends.get(end)
        if info is None:
            info = ends[end] = {"local": split_address(ev["local"]),
                                "remote": split_address(ev["remote"]),
                                "channel": ev.get("channel"), "t": ev.get("t", 0.0),
                                "kind": None, "role": ev.get("role"), "events": []}
        if ev["type"] in ("connect", "accept"):
            info["kind"] = ev["type"]
        info["events"].append(ev)
    for end, info in ends.items():
        key = _key(info["local"], info["remote"])
        candidates = by_key.get(key, [])
        if not candidates:
            result.coverage.uncaptured_ends.append(
                f"{info['role']} pid {end[0]} conn {end[1]} "
                f"({join_address(*info['local'])} > {join_address(*info['remote'])})")
            continue
        # The connection whose first segment came last before the end's first
        # event (the connect/accept event follows the handshake).
        conn = candidates[0]
        for c in candidates:
            if c.start is not None and c.start <= info["t"] + 1.0:
                conn = c
        conn.ends.append((end[0], end[1], info["role"]))
        conn.channel = conn.channel or info["channel"]
        result._conn_of_end[end] = conn
        info["conn"] = conn
        if not any(s.flags & SYN for s in conn.segments[:8]):
            # No SYN captured: the trace says who connected.
            if info["kind"] == "connect":
                conn.client, conn.server = info["local"], info["remote"]
            elif info["kind"] == "accept":
                conn.client, conn.server = info["remote"], info["local"]

    # 3. Relative numbers, kinds and phases, per connection.
    for conn in result.connections:
        dirs = state[id(conn)]
        late = [False, False]
        for seg in conn.segments:
            d = 0 if (seg.src, seg.sport) == conn.client else 1
            seg.direction = d
            mine, peer = dirs[d], dirs[1 - d]
            if seg.flags & SYN and (mine.isn is None or not mine.from_syn):
                mine.isn, mine.from_syn = seg.seq, True
                conn.syn_seen[d] = True
                conn.isn[d] = seg.seq
            if mine.isn is None:
                mine.isn = (seg.seq - 1) & _MASK
                conn.isn[d] = mine.isn
                late[d] = True
            rel = mine.relative(seg.seq)
            seg.rel_seq = rel
            if seg.flags & ACK and peer.isn is not None:
                seg.rel_ack = peer.relative(seg.ack)
            start = rel - 1 + (1 if seg.flags & SYN else 0)
            seg.offset = start
            end = start + seg.len
            top = end + (1 if seg.flags & FIN else 0) + 1
            if top > mine.high:
                mine.high = top
            if seg.len:
                seg.retransmission = bool(mine.ranges) and start < mine.sent
                mine.sent = max(mine.sent, end)
                mine.ranges.append((start, end, seg))
            if seg.flags & FIN:
                if mine.fin_offset is not None:
                    seg.retransmission = True
                mine.fin_offset = end
                conn.fin_seen[d] = True
            # kind and phase
            if seg.flags & RST:
                seg.kind, seg.phase = "rst", "close"
                conn.reset = True
            elif seg.flags & SYN:
                seg.kind = "syn-ack" if seg.flags & ACK else "syn"
                seg.phase = "open"
            elif seg.flags & FIN:
                seg.kind, seg.phase = "fin", "close"
            elif seg.len:
                seg.kind, seg.phase = "data", "data"
            else:
                seg.kind = "ack"
                if rel == 1 and seg.rel_ack == 1 and not mine.ranges and mine.fin_offset is None \
                        and not any(s.kind == "ack" and s.direction == d for s in conn.open):
                    seg.phase = "open"            # the handshake's third segment
                elif peer.fin_offset is not None and seg.rel_ack == peer.fin_offset + 2:
                    seg.phase = "close"           # acknowledges the peer's FIN
                else:
                    seg.phase = "ack"
            if seg.phase == "open":
                conn.open.append(seg)
            elif seg.phase == "close":
                conn.close.append(seg)
        for d in (0, 1):
            if late[d]:
                result.notes.append(
                    f"{conn.name}: the capture has no SYN from the "
                    f"{'client' if d == 0 else 'server'}; its relative numbers count from its "
                    "first captured segment and its bytes cannot be matched to the trace")
        conn._dirs = dirs
        conn._late = late

    # 4. Bytes: events <-> segments, per direction, by interval arithmetic.
    cov = result.coverage
    by_event = result._by_event
    for conn in result.connections:
        if not conn.ends:
            cov.untraced_connections.append(conn)
            continue
        dirs = conn._dirs
        for d in (0, 1):
            flow_src = conn.client if d == 0 else conn.server
            ranges = sorted(dirs[d].ranges, key=lambda r: (r[0], r[1]))
            union = _union([(r[0], r[1]) for r in ranges])
            distinct = sum(e - s for s, e in union)
            total = sum(r[1] - r[0] for r in ranges)
            cov.retransmitted_bytes += total - distinct
            cov.segment_bytes += distinct
            if conn._late[d]:
                # Unaligned: nothing can be matched, everything is listed.
                for s, e in union:
                    cov.unmatched_segments.append(
                        (conn, d, s, e, [r[2] for r in ranges if r[0] < e and s < r[1]]))
                union, ranges = [], []
            # The events of each end on this direction: raw bytes (send/recv)
            # and their annotations (command/reply), each a disjoint layer.
            raw_union_parts = []
            for pid, cid, _role in conn.ends:
                info = ends[(pid, cid)]
                outgoing = info["local"] == flow_src
                want_dir = "out" if outgoing else "in"
                raw, notes, eofs = [], [], []
                for ev in info["events"]:
                    if ev.get("dir") != want_dir or ev.get("offset") is None:
                        continue
                    length = ev.get("len") or 0
                    if ev["type"] in ("send", "recv"):
                        if length == 0:
                            if ev["type"] == "recv":
                                eofs.append(ev)
                            continue
                        raw.append((ev["offset"], ev["offset"] + length, ev))
                    elif ev["type"] in ("command", "reply"):
                        notes.append((ev["offset"], ev["offset"] + length, ev))
                for layer, counted in ((raw, True), (notes, False)):
                    layer.sort(key=lambda r: r[0])
                    _attach(layer, ranges, by_event)
                    if counted:
                        raw_union_parts.extend((s, e) for s, e, _ in layer)
                        for s, e, ev in layer:
                            cov.trace_bytes += e - s
                            got = _overlap(union, s, e)
                            cov.trace_matched += got
                            if got < e - s:
                                for gs, ge in _gaps(union, s, e):
                                    cov.unmatched_trace.append((ev, gs, ge))
                for ev in eofs:
                    fin = [s for s in conn.segments if s.direction == d and s.flags & FIN
                           and s.offset + s.len == ev["offset"]]
                    by_event.setdefault(id(ev), []).extend(fin)
                    for s in fin:
                        s.events.append(ev)
            ev_union = _union(sorted(raw_union_parts))
            for s, e in union:
                cov.segment_matched += _overlap(ev_union, s, e)
                for gs, ge in _gaps(ev_union, s, e):
                    segs = [r[2] for r in ranges if r[0] < ge and gs < r[1]]
                    cov.unmatched_segments.append((conn, d, gs, ge, segs))
        # Pure ACKs: the events whose last byte they acknowledge.
        for seg in conn.segments:
            if seg.kind == "ack" and seg.phase == "ack" and seg.rel_ack:
                peer_ranges = dirs[1 - seg.direction].ranges
                target = seg.rel_ack - 2           # offset of the last byte acknowledged
                for s, e, carrier in peer_ranges:
                    if s <= target < e:
                        seg.acks = list(carrier.events)
                        break

    # 5. Opening and closing segments to connect/accept/close events, and each
    #    data connection to the control events that caused it.
    for ev in events:
        conn = result.connection_of(ev) if ev.get("type") in ("connect", "accept", "close") else None
        if conn is None:
            continue
        segs = conn.open if ev["type"] in ("connect", "accept") else conn.close
        by_event.setdefault(id(ev), []).extend(segs)
    _find_causes(result, events)

    # 6. Both sides of every mapping in a stable order: events in trace
    #    order, segments in capture order, each once.
    for seg in segments:
        if len(seg.events) > 1:
            seg.events = _dedup(sorted(seg.events, key=_trace_order))
        if len(seg.acks) > 1:
            seg.acks = _dedup(sorted(seg.acks, key=_trace_order))
    for key, segs in by_event.items():
        if len(segs) > 1:
            by_event[key] = _dedup(sorted(segs, key=lambda s: s.number))
    return result


def _trace_order(ev):
    return (ev.get("t", 0.0), ev.get("pid", 0), ev.get("seq", 0))


def _dedup(items: list) -> list:
    seen, out = set(), []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out


def _attach(layer, ranges, by_event) -> None:
    """Link each (start, end, event) of a disjoint, sorted layer to the
    segment ranges that overlap it."""
    if not layer or not ranges:
        return
    starts = [s for s, _, _ in layer]
    for s, e, seg in ranges:
        i = bisect.bisect_right(starts, s) - 1
        if i < 0:
            i = 0
        while i < len(layer) and layer[i][0] < e:
            ls, le, ev = layer[i]
            if ls < e and s < le:
                seg.events.append(ev)
                by_event.setdefault(id(ev), []).append(seg)
            i += 1


def _union(intervals) -> list[tuple[int, int]]:
    """Merge sorted ``(start, end)`` intervals."""
    out: list[list[int]] = []
    for s, e in intervals:
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1][1] = e
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _overlap(union, s: int, e: int) -> int:
    """Bytes of [s, e) inside a merged interval list."""
    if not union:
        return 0
    i = max(0, bisect.bisect_right(union, (s, float("inf"))) - 1)
    got = 0
    while i < len(union) and union[i][0] < e:
        us, ue = union[i]
        got += max(0, min(e, ue) - max(s, us))
        i += 1
    return got


def _gaps(union, s: int, e: int) -> list[tuple[int, int]]:
    """The parts of [s, e) not inside a merged interval list."""
    gaps, pos = [], s
    i = max(0, bisect.bisect_right(union, (s, float("inf"))) - 1) if union else 0
    while i < len(union) and union[i][0] < e:
        us, ue = union[i]
        if ue > pos:
            if us > pos:
                gaps.append((pos, min(us, e)))
            pos = max(pos, ue)
        i += 1
    if pos < e:
        gaps.append((pos, e))
    return gaps


def _find_causes(result: Correlation, events: list) -> None:
    """Attribute each data connection to its announcement and its command."""
    # Control events per control end, in stream order.
    announcements = []      # (t, port, host, event, control end)
    transfers: dict = {}    # control end -> [command events], in order
    for ev in events:
        if ev.get("channel") != "control":
            continue
        end = (ev.get("pid"), ev.get("conn"))
        found = _announcement_of(ev)
        if found:
            announcements.append((ev.get("t", 0.0), found[1], found[0], ev, end))
        if ev.get("type") == "command" and ev.get("verb") in TRANSFER_VERBS:
            transfers.setdefault(end, []).append(ev)
    if not announcements:
        return
    for conn in result.connections:
        if conn.channel == "control":
            continue
        listener_port = conn.server[1]
        opened = conn.open[0].t if conn.open else (conn.start or 0.0)
        best: dict = {}
        for t, port, host, ev, end in announcements:
            if port != listener_port or t > opened + 1.0:
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
            result._caused.setdefault(id(ev), []).append(conn)


def _order(ev):
    return (ev.get("seq", -1), ev.get("t", 0.0)) if ev.get("seq") is not None else (
        float("inf"), ev.get("t", 0.0))


class _CallableModule(types.ModuleType):
    """Lets ``trace.correlate(events, packets)`` work with the module itself,
    so that ``import trace.correlate`` gives both the function's name and
    the module's other names (``trace.correlate.read_segments``)."""

    def __call__(self, events, packets) -> Correlation:
        return correlate(events, packets)


sys.modules[__name__].__class__ = _CallableModule
