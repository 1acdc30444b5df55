"""Pictures where a picture beats a table (matplotlib; used by the notebooks).

* :func:`connection_lifetimes`: one bar per connection over the session's
  time: the control connection spans it, each data connection is a short bar
  of its own. Messages are marks on the bars, so you can see commands and
  replies travel on the control bar while file bytes travel on the data bars.
* :func:`time_sequence`: the classic tcptrace picture of one connection from
  a capture: sequence number against time, one mark per segment, with the
  acknowledgements of the other side as a line that follows them up.
"""

from __future__ import annotations

from typing import Iterable

from . import model
from .tcp import ACK, FIN, SYN

CHANNEL_COLOURS = {"control": "tab:blue", "data": "tab:orange"}


def connection_lifetimes(events: Iterable, ax=None, title: str | None = None):
    """Plot when each connection of a traced session was open; returns the Figure."""
    import matplotlib.pyplot as plt

    session, steps = model.build(events)
    if not session.connections:
        raise ValueError("the trace holds no connections to draw")
    # Time zero is the first connection, not the first event: a server may
    # have waited a while for its first client.
    start = min(c.t_open for c in session.connections)
    end = session.end
    connections = session.connections
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.45 * len(connections) + 1.5))
    rows = {connection.number: row for row, connection in enumerate(reversed(connections))}
    transfers = {t.connection.number: t for t in session.transfers if t.connection is not None}
    for connection in connections:
        row = rows[connection.number]
        closed = connection.t_close if connection.t_close is not None else end
        colour = CHANNEL_COLOURS.get(connection.channel, "grey")
        ax.broken_barh([(connection.t_open - start, max(closed - connection.t_open, 1e-6))],
                       (row - 0.3, 0.6), facecolors=colour, alpha=0.35, edgecolor=colour)
        transfer = transfers.get(connection.number)
        what = f"{transfer.command} {transfer.path}" if transfer else connection.channel
        ax.text(closed - start, row, f"  {connection.label} {what}", va="center", fontsize=8)
    # Messages: a mark where each one was sent, pointing the way it travelled.
    for step in steps:
        connection = step.connection
        if connection is None or step.kind not in ("line", "data"):
            continue
        marker = ">" if step.sender == model.CLIENT else "<"
        ax.plot(step.t - start, rows[connection.number], marker=marker, markersize=5,
                color=CHANNEL_COLOURS.get(connection.channel, "grey"), linestyle="none")
    ax.set_yticks(list(rows.values()))
    ax.set_yticklabels([f"{c.label} {c.channel}" for c in reversed(connections)])
    ax.set_xlabel("seconds since the session started")
    ax.set_title(title or "Connections over time: ▶ client to server, ◀ server to client")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    return ax.figure


def time_sequence(connection, ax=None, title: str | None = None):
    """Sequence number against time for one correlated capture connection.

    ``connection`` is a :class:`trace.results.Connection` (from
    ``correlate(events, packets).connections``). Each data segment is a
    vertical stroke from its first to its last relative sequence number (a
    retransmission: red, with a cross on top); the other side's
    acknowledgements are a step line below it.
    """
    import matplotlib.pyplot as plt

    segments = [s for s in connection.segments if s.rel_seq is not None]
    if not segments:
        raise ValueError(f"no segments with sequence numbers on {connection.name}")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4))
    start = min(s.t for s in segments)
    # The direction that carried the most bytes is the one worth drawing.
    carried = [sum(s.len for s in segments if s.direction == d) for d in (0, 1)]
    sender = 0 if carried[0] >= carried[1] else 1
    repeats = []
    for segment in segments:
        if segment.direction != sender:
            continue
        x = (segment.t - start) * 1000
        if segment.len:
            colour = "tab:red" if segment.retransmission else "tab:blue"
            ax.plot([x, x], [segment.rel_seq, segment.rel_seq + segment.len], color=colour, linewidth=2)
            if segment.retransmission:
                repeats.append((x, segment.rel_seq + segment.len))
        # SYN and FIN each take one sequence number of their own; a FIN often
        # rides on the last data segment, so mark it at that segment's end.
        for flag, name in ((SYN, "SYN"), (FIN, "FIN")):
            if segment.flags & flag:
                y = segment.rel_seq + segment.len
                ax.plot(x, y, marker="o", color="black")
                ax.annotate(name, (x, y), fontsize=8, textcoords="offset points", xytext=(4, -10))
    acks = sorted((s.t, s.rel_ack) for s in segments
                  if s.direction != sender and s.rel_ack is not None and s.flags & ACK)
    if acks:
        ax.step([(t - start) * 1000 for t, _ in acks], [a for _, a in acks], where="post",
                color="tab:green", label="acknowledged by the receiver")
    ax.plot([], [], color="tab:blue", linewidth=2, label="data segment (seq to seq+len)")
    if repeats:
        # A retransmission is a red stroke with a cross on top: the sender
        # went back to bytes it had already sent (TCP repairing a loss that
        # the application's trace never sees).
        ax.plot([x for x, _ in repeats], [y for _, y in repeats], marker="x", color="tab:red",
                markersize=8, linestyle="none", label="retransmission (bytes sent again)")
    ax.set_xlabel("milliseconds since the first segment")
    ax.set_ylabel("relative sequence number")
    ax.set_title(title or f"Time-sequence graph of {connection.name}")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return ax.figure
