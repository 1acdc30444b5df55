"""What correlating a trace with a capture finds: the result types.

Every field is declared here; the phases of the join (:mod:`trace.join`)
fill them in and set nothing else. A :class:`Correlation` holds the
captured :class:`Connection` objects, each with two :class:`Flow` objects
(one per direction), the :class:`Coverage` figures both ways and the
:class:`Retransmission` objects found on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .addresses import join_address
from .intervals import SeenBytes
from .tcp import Segment

__all__ = ["Flow", "TraceEnd", "Connection", "Retransmission", "Coverage", "Correlation"]


@dataclass(eq=False)
class Flow:
    """One direction of one captured connection: how its sequence numbers
    map to stream offsets, and which stream ranges its segments carried."""

    isn: int | None = None          # the sequence number of its SYN (or a guess, if late)
    from_syn: bool = False          # the ISN was read from a captured SYN
    late: bool = False              # no SYN captured: offsets cannot be trusted
    high: int = 0                   # highest relative number seen, for unwrapping
    ranges: list = field(default_factory=list)    # (start, end, segment), capture order
    seen: SeenBytes = field(default_factory=SeenBytes)
    fin_offset: int | None = None   # stream offset of its FIN


@dataclass(eq=False)
class TraceEnd:
    """One end of a connection as the trace saw it: one process's ``conn``."""

    pid: int | None
    conn: int
    role: str | None
    channel: str | None
    local: tuple[str, int]
    remote: tuple[str, int]
    t: float                        # its first event
    kind: str | None = None         # "connect" or "accept", if the trace has it
    events: list = field(default_factory=list)

    @property
    def key(self) -> tuple:
        return (self.pid, self.conn)

    def describe(self) -> str:
        return (f"{self.role} pid {self.pid} conn {self.conn} "
                f"({join_address(*self.local)} > {join_address(*self.remote)})")


@dataclass(eq=False)
class Connection:
    """One TCP connection seen in the capture and/or the trace.

    ``client`` and ``server`` are ``(host, port)``: the client is the end
    that sent the SYN (or, with no SYN captured, the end the trace says
    connected). ``ends`` lists the trace's connection ends on it as
    ``(pid, conn, role)``. ``segments`` are its segments in capture order;
    ``open``/``close`` the handshake and teardown segments; ``flows`` its
    two directions (0: the client's). For a data connection,
    ``announced_by`` holds the PASV/EPSV replies or PORT/EPRT commands that
    announced it and ``used_by`` the transfer commands (RETR, STOR, LIST,
    NLST) that used it, one per traced end.
    """

    client: tuple[str, int]
    server: tuple[str, int]
    channel: str | None = None
    ends: list[tuple[int, int, str]] = field(default_factory=list)     # (pid, conn, role)
    segments: list[Segment] = field(default_factory=list)
    open: list[Segment] = field(default_factory=list)      # SYN, SYN-ACK, the third ACK
    close: list[Segment] = field(default_factory=list)     # FINs, their ACKs, RSTs
    announced_by: list[dict] = field(default_factory=list)
    used_by: list[dict] = field(default_factory=list)
    flows: tuple[Flow, Flow] = field(default_factory=lambda: (Flow(), Flow()))
    reset: bool = False
    start: float | None = None

    @property
    def name(self) -> str:
        return f"{join_address(*self.client)} > {join_address(*self.server)}"

    @property
    def causes(self) -> list:
        """The control-channel events that caused this data connection."""
        return self.announced_by + self.used_by

    @property
    def isn(self) -> list:
        return [flow.isn for flow in self.flows]

    @property
    def syn_seen(self) -> list:
        return [flow.from_syn for flow in self.flows]

    @property
    def fin_seen(self) -> list:
        """Which directions sent a FIN: ``[client_sent, server_sent]``."""
        return [flow.fin_offset is not None for flow in self.flows]

    def has_handshake(self) -> bool:
        kinds = {s.kind for s in self.open}
        return {"syn", "syn-ack"} <= kinds

    def fins(self) -> list:
        return self.fin_seen


@dataclass(eq=False)
class Retransmission:
    """Payload bytes a segment carried again: stream range ``[start, end)``
    of its connection's ``direction``, already carried by an earlier
    segment. ``events`` are the trace events whose bytes these are (the
    sender's send and the receiver's recv, and the command or reply)."""

    segment: Segment
    start: int
    end: int
    events: list = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return self.end - self.start


@dataclass
class Coverage:
    """How much of each side the other accounts for.

    ``trace_bytes``: bytes of ``send``/``recv`` events on connections (a byte
    seen by both traced ends counts once per end, and the bytes of a
    connection missing from the capture count too); ``trace_matched``:
    those found in segment payloads. ``segment_bytes``: distinct payload bytes in
    the capture's segments on traced connections (a retransmitted byte counts
    once); ``segment_matched``: those found in trace events.
    ``retransmitted_bytes``/``retransmitted_segments``: payload carried
    again. ``matched_ends``: trace connection ends found in the capture
    (none: the capture is not of this session, and coverage is 0%, not
    100% of nothing). ``unmatched_trace`` lists ``(event, start, end)``
    stream ranges no segment carried; ``unmatched_segments`` lists
    ``(connection, direction, start, end, [segments])`` ranges no event
    accounts for. ``untraced_connections`` are connections in the capture
    the trace never mentions (their bytes are not in the figures),
    ``uncaptured_ends`` trace connection ends with no connection in the
    capture.
    """

    trace_bytes: int = 0
    trace_matched: int = 0
    segment_bytes: int = 0
    segment_matched: int = 0
    retransmitted_bytes: int = 0
    retransmitted_segments: int = 0
    matched_ends: int = 0
    unmatched_trace: list = field(default_factory=list)
    unmatched_segments: list = field(default_factory=list)
    untraced_connections: list = field(default_factory=list)
    uncaptured_ends: list = field(default_factory=list)

    @property
    def holds_session(self) -> bool:
        """Whether the capture has any of the trace's connections at all."""
        return self.matched_ends > 0

    def _fraction(self, matched: int, total: int) -> float:
        if total:
            return matched / total
        # Nothing to count: complete if the trace's connections are in the
        # capture (an empty file moved), nothing if none of them are.
        return 1.0 if self.holds_session else 0.0

    @property
    def trace_fraction(self) -> float:
        return self._fraction(self.trace_matched, self.trace_bytes)

    @property
    def segment_fraction(self) -> float:
        return self._fraction(self.segment_matched, self.segment_bytes)

    def warning(self) -> str | None:
        """One line if the capture is not of this trace's session."""
        if self.holds_session:
            return None
        traced = len(self.uncaptured_ends)
        return (f"the capture holds none of the trace's {traced} connection ends "
                f"({len(self.untraced_connections)} other connections captured): "
                "is it a capture of another session?")

    def summary(self) -> str:
        lines = [self.warning()] if self.warning() else []
        lines += [
            f"trace bytes found in segments: {self.trace_matched} of {self.trace_bytes} "
            f"({100 * self.trace_fraction:.2f}%)",
            f"segment payload bytes found in the trace: {self.segment_matched} of "
            f"{self.segment_bytes} ({100 * self.segment_fraction:.2f}%)",
        ]
        if self.retransmitted_bytes:
            lines.append(f"retransmitted: {self.retransmitted_segments} segments, "
                         f"{self.retransmitted_bytes} payload bytes (counted once)")
        for event, start, end in self.unmatched_trace[:20]:
            lines.append(f"  not in the capture: {event.get('role', '?')} {event.get('type')} "
                         f"conn {event.get('conn')} {event.get('dir', '')} bytes {start}..{end}")
        for conn, direction, start, end, segs in self.unmatched_segments[:20]:
            nums = ",".join(f"#{s.number}" for s in segs[:5]) + (",..." if len(segs) > 5 else "")
            lines.append(f"  not in the trace: {conn.name} {'c>s' if direction == 0 else 's>c'} "
                         f"bytes {start}..{end} in {nums}")
        for conn in self.untraced_connections[:20]:
            lines.append(f"  connection not in the trace: {conn.name}")
        for end in self.uncaptured_ends[:20]:
            lines.append(f"  trace connection not in the capture: {end}")
        return "\n".join(lines)


@dataclass(eq=False)
class Correlation:
    """The result of :func:`trace.join.correlate`."""

    events: list[dict] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    coverage: Coverage = field(default_factory=Coverage)
    retransmissions: list[Retransmission] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The mappings, keyed by id() of an event (events are dicts).
    by_event: dict = field(default_factory=dict, repr=False)        # -> [Segment]
    conn_of_end: dict = field(default_factory=dict, repr=False)     # (pid, conn) -> Connection
    caused: dict = field(default_factory=dict, repr=False)          # -> [Connection]
    repeats_of_event: dict = field(default_factory=dict, repr=False)  # -> [Retransmission]
    events_by_conn: dict | None = field(default=None, repr=False)   # built on first use

    def segments_for(self, event) -> list[Segment]:
        """The segments carrying this event's bytes (for a zero-length recv:
        the FIN it saw; for connect/accept/close: the handshake/teardown)."""
        return self.by_event.get(id(event), [])

    def connections_caused_by(self, event) -> list[Connection]:
        """The data connections a PASV/EPSV reply, PORT/EPRT command or
        transfer command (RETR, STOR, LIST, NLST) caused; their handshake and
        teardown segments are ``conn.open`` and ``conn.close``."""
        return self.caused.get(id(event), [])

    def retransmissions_of(self, event) -> list[Retransmission]:
        """The retransmissions that carried some of this event's bytes again."""
        return self.repeats_of_event.get(id(event), [])

    def events_for(self, segment: Segment) -> list:
        return segment.events

    def connection_of(self, event) -> Connection | None:
        return self.conn_of_end.get((event.get("pid"), event.get("conn")))

    def events_of(self, conn: Connection) -> list:
        """Every trace event of the connection's traced ends, in trace order."""
        if self.events_by_conn is None:
            self.events_by_conn = {}
            for ev in self.events:
                c = self.connection_of(ev)
                if c is not None:
                    self.events_by_conn.setdefault(id(c), []).append(ev)
        return self.events_by_conn.get(id(conn), [])

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
