"""A capture written back with the application's view on every frame.

:func:`annotate` correlates a trace with a capture and writes the capture
again as pcapng, each frame carrying a comment (pcapng's ``opt_comment``,
which Wireshark shows above the frame's layers and as ``frame.comment``)
that names the connection, its role and the trace event the frame carries:

    control: RETR a.bin
    SYN of data #3, announced by the 227
    data #3 for RETR a.bin: bytes 0-65482
    ACK on data #3: bytes 0-65482 received
    FIN of data #3 from 127.0.0.1:50123
    not in the trace: 127.0.0.1:5353 > 127.0.0.1:40000

Frames, timestamps (to the file's own resolution) and link types are
copied unchanged, so Wireshark's analysis of the annotated file is the
analysis of the original, with the trace's words beside it.
"""

from __future__ import annotations

import os

from .join import correlate
from .pcap import CaptureFileError, PcapNgWriter, read_frames
from .results import Connection, Correlation
from .tcp import Segment

__all__ = ["annotate", "connection_labels", "comment_for"]

NOT_TCP = "not TCP: not part of the session"


def annotate(events, packets_path, out_path) -> Correlation:
    """Write ``packets_path`` to ``out_path`` (pcapng) with a comment on every
    frame; returns the correlation the comments come from. ``events``:
    trace events or a log path."""
    if isinstance(events, (str, os.PathLike)):
        from .reader import load
        events = load(events)
    source, target = os.fspath(packets_path), os.fspath(out_path)
    if os.path.exists(target) and os.path.exists(source) and os.path.samefile(source, target):
        raise CaptureFileError(f"{target}: is the capture being annotated; "
                               "write the annotated copy somewhere else")
    result = correlate(events, source)
    labels = connection_labels(result)
    by_number = {seg.number: seg for seg in result.segments}
    try:
        with PcapNgWriter(target) as out:
            for frame in read_frames(source):
                seg = by_number.get(frame.number)
                out.write(frame, comment_for(seg, labels) if seg is not None else NOT_TCP)
    except BaseException:
        # Half an annotated file would pass for a whole one (Ctrl-C, disk full).
        if os.path.isfile(target):
            os.unlink(target)
        raise
    return result


def connection_labels(result: Correlation) -> dict[int, str]:
    """``id(connection)`` -> ``"control"`` (``"control #2"`` if there are
    several) or ``"data #n"`` (numbered in capture order), for the
    connections the trace knows."""
    labels: dict[int, str] = {}
    control = [c for c in result.connections if c.channel == "control" and c.ends]
    for n, conn in enumerate(control, 1):
        labels[id(conn)] = f"control #{n}" if len(control) > 1 else "control"
    data = [c for c in result.connections if c.channel == "data"]
    for n, conn in enumerate(data, 1):
        labels[id(conn)] = f"data #{n}"
    return labels


def _noun(label: str) -> str:
    """``"the control connection"`` reads better than ``"control"``."""
    return "the control connection" if label == "control" else label


def _first_line(event) -> str:
    return (event.get("text") or "").splitlines()[0] if event.get("text") else event.get("type", "")


def _announcer(conn: Connection) -> str:
    ev = conn.announced_by[0]
    return str(ev.get("code")) if ev.get("type") == "reply" else ev.get("verb", "command")


def _purpose(conn: Connection) -> str:
    return f" for {_first_line(conn.used_by[0])}" if conn.used_by else ""


def comment_for(seg: Segment, labels: dict[int, str]) -> str:
    """The comment for one segment (see the module's docstring)."""
    conn = seg.connection
    label = labels.get(id(conn)) if conn is not None else None
    if label is None:
        return f"not in the trace: {seg.source} > {seg.destination}"
    text = _what(seg, conn, label)
    if seg.retransmission:
        text += f" (retransmission of {seg.repeated} bytes)" if seg.repeated else " (retransmission)"
    elif seg.out_of_order:
        text += " (out of order: arrived after later bytes)"
    return text


def _what(seg: Segment, conn: Connection, label: str) -> str:
    name = _noun(label)
    if seg.kind in ("syn", "syn-ack"):
        text = f"{'SYN' if seg.kind == 'syn' else 'SYN-ACK'} of {name}"
        if conn.announced_by:
            text += f", announced by the {_announcer(conn)}"
        return text
    if seg.phase == "open":
        return f"ACK of {name}'s handshake"
    if seg.kind == "rst":
        return f"RST of {name} from {seg.source}"
    parts = []
    if seg.len:
        parts.append(_payload(seg, conn, label))
    if seg.kind == "fin":
        parts.append(f"FIN of {name} from {seg.source}")
    if parts:
        return "; ".join(parts)
    if seg.phase == "close":
        return f"ACK of {name}'s FIN from {seg.destination}"
    if seg.rel_ack is not None and seg.rel_ack > 1:
        return f"ACK on {name}: bytes 0-{seg.rel_ack - 2} received"
    return f"ACK on {name}"


def _payload(seg: Segment, conn: Connection, label: str) -> str:
    span = f"bytes {seg.offset}-{seg.offset + seg.len - 1}"
    if conn.channel == "control":
        lines = []
        for ev in seg.events:
            if ev.get("type") in ("command", "reply") and _first_line(ev) not in lines:
                lines.append(_first_line(ev))
        return f"{label}: {' | '.join(lines)}" if lines else f"{label}: {span}"
    if not seg.events:
        return f"{label}{_purpose(conn)}: {span} not in the trace"
    return f"{label}{_purpose(conn)}: {span}"
