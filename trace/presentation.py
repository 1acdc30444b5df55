"""The words of the diagram: what each step says, as plain text.

The model (:mod:`trace.model`) says what happened; :mod:`trace.diagram`
lays it out in lanes and arrows; this module says it in words. Everything
here returns text a terminal can show: whatever came from a peer or a log
goes through :func:`trace.printable.printable`.
"""

from __future__ import annotations

import json

from .records import CLIENT, CLOSE, DATA, LINE, OPEN, Step
from .printable import printable
from .units import format_bytes, format_duration, format_rate


def step_text(step: Step) -> str:
    """The label of one step: the message, the connection event or the note."""
    if step.kind == LINE:
        return line_text(step)
    if step.kind == DATA:
        return segment_text(step.offset, step.length)
    if step.kind == OPEN:
        return open_text(step)
    if step.kind == CLOSE:
        return close_text(step)
    return note_text(step)


def line_text(step: Step) -> str:
    """A command or a reply; a multi-line reply (211-Features: ...) on one row."""
    text = " ↵ ".join(printable(line.strip()) for line in step.text.splitlines())
    if step.repeat > 1:
        # The tracer folded a flood of error lines into this one (trace.linetap).
        text += f" (×{step.repeat:,})"
    return text


def segment_text(offset: int, length: int) -> str:
    return f"{format_bytes(length)} @ {offset}–{offset + length - 1}"


def folded_segments_text(total: int, low: int, high: int, count: int, seconds: float) -> str:
    """Consecutive data segments drawn as one row."""
    text = f"{format_bytes(total)} @ {low}–{high - 1}"
    if count > 1:
        text += f" in {count} segments over {format_duration(seconds)}"
    return text


def one_side(text: str, step: Step) -> str:
    """A message only one side's log shows says so."""
    return f"{text} ({step.seen} log only)" if step.seen != "both" else text


def open_text(step: Step) -> str:
    connection = step.connection
    client, server = printable(connection.client_address), printable(connection.server_address)
    if connection.connector is None:
        return (f"{connection.label} {connection.channel} (open before the log starts) "
                f"{client} ↔ {server}")
    by_client = connection.connector == CLIENT
    source, target = (client, server) if by_client else (server, client)
    text = f"{connection.label} {connection.channel}: connect {source} → {target}"
    if not connection.paired:
        text += f" ({connection.seen_by} log only)"
    return text


def close_text(step: Step) -> str:
    connection = step.connection
    text = f"{step.role} closes {connection.label}"
    if step.final:
        # The step's own time, not the connection's latest state: a notebook
        # draws the steps after the whole log has been read.
        lived = step.t - connection.t_open
        text += f": {connection.channel} connection closed after {format_duration(lived)}"
    return text


def note_text(step: Step) -> str:
    """A note over the side that wrote it: a process starts, listens, a transfer, an error."""
    event = step.event
    kind = event.get("type")
    if step.style == "unknown":
        # As it is, less what the row already shows (time, side, process).
        fields = {k: v for k, v in event.items() if k not in ("type", "t", "seq", "role", "pid")}
        text = f"? {kind} " + json.dumps(fields, ensure_ascii=False, separators=(",", ":"),
                                         default=str)
    elif kind == "header":
        text = f"{step.role} pid {event['pid']} starts tracing on {event.get('host', '?')}"
    elif kind == "listen":
        text = f"{step.role} listens on {event['local']} ({event['channel']})"
    elif kind == "transfer_start":
        what = f"{event['command']} {event['path']}".strip()
        text = f"{what} starts ({event['direction']})"
    elif kind == "transfer_end":
        nbytes, duration = event["bytes"], float(event["duration"])
        rate = f", {format_rate(nbytes / duration)}" if duration > 0 else ""
        text = (f"{event['command']} {event['path']}".strip() + f": {format_bytes(nbytes)} in "
                f"{format_duration(duration)}{rate}, {event['verdict']}")
    elif kind == "error":
        code = event.get("code")
        text = f"error: {event['message']}" + (f" ({code})" if code is not None else "")
    else:
        text = step.text
    return printable(text)
