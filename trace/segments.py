"""The application's view and the network's, interleaved.

:func:`render_with_segments` takes a trace and a capture and returns a rich
renderable: the application events (connects, commands, replies, sends,
receives, closes) in time order, each followed by the TCP segments that
carry it, with their flags, relative sequence and acknowledgement numbers
and payload length. Each segment appears once:

* under the command, reply, send or recv whose bytes it carries (the first
  one in the trace, normally the sender's);
* a SYN, SYN-ACK and the handshake's ACK under the connection's
  ``connect``/``accept``, which for a data connection also names the
  PASV/EPSV reply or PORT/EPRT command and the RETR/STOR/LIST/NLST that
  caused it;
* a FIN, RST or the ACK of a FIN under the ``close`` or the zero-length
  ``recv`` (end of stream) it belongs to;
* a pure ACK of data under the event whose bytes it acknowledges;
* anything else (bytes the trace does not have) on a line of its own, at
  its time.

    python -m trace.segments session.log --pcap capture.pcap
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .announce import TRANSFER_VERBS
from .join import correlate
from .reader import time_order_key
from .results import Correlation
from .tcp import Segment

__all__ = ["render_with_segments", "main"]

_SHOWN = ("connect", "accept", "command", "reply", "send", "recv", "close", "listen",
          "transfer_start", "transfer_end", "error")


def render_with_segments(events, packets, *, correlation: Correlation | None = None,
                         max_segments: int = 8, acks: bool = True, raw_control: bool = False):
    """The events of ``events`` with the segments of ``packets`` beneath them.

    ``events``: trace events or a log path; ``packets``: a pcap/pcapng path,
    scapy packets or segments (see :func:`trace.correlate.correlate`), or
    ``None`` when ``correlation`` (an earlier result) is given.
    ``max_segments``: segments shown under one event before the rest are
    summed up in one line. ``acks=False`` leaves out pure ACKs of data.
    ``raw_control=True`` also shows the control channel's raw send/recv
    events (by default its commands and replies stand for them).
    """
    result = correlation or correlate(events, packets)
    evs = sorted(result.events, key=time_order_key)
    t0 = min([e["t"] for e in evs if "t" in e] + [s.t for s in result.segments] or [0.0])

    # Where each segment is shown: the index of its event, or None.
    order = {id(e): i for i, e in enumerate(evs)}
    homes: dict[int, list[Segment]] = {}
    loose: list[Segment] = []
    for seg in result.segments:
        home = _home(result, seg, order, raw_control, acks)
        if home is None:
            if seg.kind == "ack" and seg.phase == "ack" and not acks and seg.connection and \
                    seg.connection.ends:
                continue
            loose.append(seg)
        else:
            homes.setdefault(home, []).append(seg)

    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    table.add_column("time", justify="right", style="dim", no_wrap=True)
    table.add_column("who", no_wrap=True)
    table.add_column("event / segment")

    loose.sort(key=lambda s: s.t)
    li = 0
    for i, ev in enumerate(evs):
        if not _visible(ev, raw_control):
            continue
        while li < len(loose) and loose[li].t <= ev.get("t", 0.0):
            _segment_rows(table, [loose[li]], t0, None, unattributed=True)
            li += 1
        table.add_row(f"{(ev.get('t', t0) - t0) * 1000:9.3f}", _who(ev), _describe(result, ev))
        _segment_rows(table, homes.get(i, []), t0, max_segments)
    while li < len(loose):
        _segment_rows(table, [loose[li]], t0, None, unattributed=True)
        li += 1
    parts = _coverage_lines(result)
    parts += [Text(f"note: {n}", style="yellow") for n in result.notes]
    parts.append(table)
    return Group(*parts)


def _coverage_lines(result: Correlation) -> list[Text]:
    """The head: coverage both ways, or a warning if nothing matched at all
    (0 bytes of 0 is not 100%: the capture is of something else)."""
    cov = result.coverage
    sizes = f"({len(result.segments)} segments, {len(result.connections)} connections)"
    if not cov.holds_session:
        return [Text(f"trace bytes in segments: 0.00%  segment bytes in the trace: 0.00%  "
                     f"(nothing matched) {sizes}", style="bold"),
                Text(f"warning: {cov.warning()}", style="bold red")]
    head = Text(f"trace bytes in segments: {100 * cov.trace_fraction:.2f}%  "
                f"segment bytes in the trace: {100 * cov.segment_fraction:.2f}%  {sizes}",
                style="bold")
    if cov.retransmitted_segments:
        head.append(f"  {cov.retransmitted_segments} retransmitted segments "
                    f"({cov.retransmitted_bytes} bytes, counted once)", style="yellow")
    return [head]


def _visible(ev, raw_control: bool) -> bool:
    if ev.get("type") not in _SHOWN:
        return False
    if ev.get("type") in ("send", "recv") and ev.get("channel") == "control" and not raw_control:
        return False
    return True


def _home(result: Correlation, seg: Segment, order: dict, raw_control: bool, acks: bool):
    conn = seg.connection
    candidates = []
    if seg.phase == "open" and conn is not None:
        candidates = [e for e in result.events_of(conn) if e["type"] in ("connect", "accept")]
    elif seg.phase == "close" and conn is not None and not seg.len:
        # A FIN or RST under the close of the end that sent it; the ACK of a
        # FIN under the end-of-stream recv (or close) of the end that sent it.
        source = seg.source
        candidates = [e for e in result.events_of(conn)
                      if (e["type"] == "close" or (e["type"] == "recv" and e.get("len") == 0))
                      and e.get("local") == source]
        if not candidates:
            # A connection the listening end never accepted is reset when
            # the listener closes.
            candidates = [e for e in result.events if e.get("type") == "close"
                          and e.get("remote") is None and e.get("local") == source]
        if not candidates:
            candidates = [e for e in seg.events if e.get("len") == 0]
        candidates = [e for e in candidates if id(e) in order]
        before = [e for e in candidates if e.get("t", 0.0) <= seg.t]
        if before:
            return max(order[id(e)] for e in before)
    elif seg.phase == "ack":
        if not acks:
            return None
        candidates = [e for e in seg.acks if _visible(e, raw_control) or e["type"] != "send"]
    else:
        carried = seg.events
        notes = [e for e in carried if e["type"] in ("command", "reply")]
        candidates = notes if notes and not raw_control else [
            e for e in carried if _visible(e, raw_control)]
        if not candidates and seg.kind in ("fin", "rst"):
            candidates = [e for e in carried]
    candidates = [e for e in candidates if id(e) in order and _visible(e, raw_control)]
    if not candidates:
        return None
    return min(order[id(e)] for e in candidates)


def _who(ev) -> Text:
    role = ev.get("role", "?")
    style = "cyan" if role == "client" else "magenta"
    conn = ev.get("conn")
    channel = ev.get("channel")
    label = role if conn is None else f"{role} {channel or ''} #{conn}".replace("  ", " ")
    return Text(label, style=style)


def _describe(result: Correlation, ev) -> Text:
    kind = ev["type"]
    if kind in ("command", "reply"):
        arrow = "→" if ev.get("dir") == "out" else "←"
        text = Text(f"{arrow} ", style="bold")
        text.append(ev.get("text", "").replace("\n", " | "),
                    style="green" if kind == "command" else "yellow")
        for conn in result.connections_caused_by(ev):
            role = "uses" if ev.get("verb") in TRANSFER_VERBS else "announces"
            text.append(f"   [{role} data connection {conn.name}]", style="dim")
        return text
    if kind in ("send", "recv"):
        if kind == "recv" and ev.get("len") == 0:
            return Text("recv: end of stream (the peer's FIN)")
        return Text(f"{kind} {ev.get('len')} bytes at offset {ev.get('offset')}")
    if kind in ("connect", "accept"):
        text = Text(f"{kind} {ev.get('local')} ↔ {ev.get('remote')}")
        conn = result.connection_of(ev)
        if conn is not None and conn.causes:
            announced = conn.announced_by[0].get("text", "") if conn.announced_by else "?"
            used = conn.used_by[0].get("text", "") if conn.used_by else "?"
            text.append(f"   for {used} (announced by {announced.splitlines()[0]})", style="dim")
        return text
    if kind == "close":
        if ev.get("remote") is None:
            return Text(f"close listener {ev.get('local')}")
        return Text(f"close (sent {ev.get('sent')}, received {ev.get('received')})")
    if kind == "listen":
        return Text(f"listen on {ev.get('local')}")
    if kind in ("transfer_start", "transfer_end"):
        text = f"{kind} {ev.get('command')} {ev.get('path')}"
        if kind == "transfer_end":
            text += f": {ev.get('bytes')} bytes, {ev.get('verdict')}"
        return Text(text, style="bold")
    if kind == "error":
        return Text(f"error: {ev.get('message')}", style="red")
    return Text(kind)


def _segment_rows(table: Table, segs: list, t0: float, limit: int | None,
                  unattributed: bool = False) -> None:
    shown = segs if limit is None or len(segs) <= limit else segs[:limit - 1]
    for seg in shown:
        table.add_row(f"{(seg.t - t0) * 1000:9.3f}", Text(""), _segment_text(seg, unattributed))
    if len(shown) < len(segs):
        rest = segs[len(shown):]
        table.add_row("", Text(""), Text(
            f"    … {len(rest)} more segments, {sum(s.len for s in rest)} payload bytes, "
            f"up to #{rest[-1].number}", style="dim"))


def _segment_text(seg: Segment, unattributed: bool) -> Text:
    arrow = f"{seg.sport}→{seg.dport}"
    style = {"open": "blue", "close": "red", "ack": "dim", "data": "white"}.get(seg.phase, "white")
    text = Text("    ")
    text.append(f"#{seg.number} {arrow} ", style="dim")
    text.append(f"[{seg.flag_text}]", style=f"bold {style}")
    seq = seg.rel_seq if seg.rel_seq is not None else seg.seq
    text.append(f" seq={seq}")
    if seg.rel_ack is not None:
        text.append(f" ack={seg.rel_ack}")
    text.append(f" len={seg.len}")
    if seg.retransmission:
        again = f" of {seg.repeated} bytes" if seg.repeated else ""
        text.append(f"  retransmission{again}", style="yellow")
    elif seg.out_of_order:
        text.append("  out of order", style="yellow")
    if unattributed and (seg.connection is None or not seg.connection.ends
                         or (seg.len and not seg.events)):
        text.append(f"  {seg.source} > {seg.destination}: not in the trace", style="yellow")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trace.segments",
                                     description="Show a trace with the captured segments "
                                                 "under the events they carry.")
    parser.add_argument("log", nargs="+", help="trace log(s)")
    parser.add_argument("--pcap", required=True, help="capture (pcap or pcapng)")
    parser.add_argument("--max-segments", type=int, default=8)
    parser.add_argument("--no-acks", action="store_true", help="leave out pure ACKs of data")
    args = parser.parse_args(argv)
    from .pcap import CaptureFileError
    from .reader import TraceError, load
    try:
        renderable = render_with_segments(load(*args.log), args.pcap,
                                          max_segments=args.max_segments, acks=not args.no_acks)
    except (CaptureFileError, TraceError) as err:
        print(err, file=sys.stderr)
        return 2
    Console().print(renderable)
    return 0


if __name__ == "__main__":
    sys.exit(main())
