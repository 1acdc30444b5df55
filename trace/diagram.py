"""Draw a traced session with rich: a sequence diagram and a summary.

The diagram has the client on the left and the server on the right, and
time going down. Every message is an arrow from its sender to its receiver.
In the *lanes* column each TCP connection is a vertical line: the control
connection's lane runs through the whole session, and each data connection's
lane starts (``┬``) where it is opened and ends (``┴``) where it is closed,
which is the two-channel design of FTP made visible. ``●`` marks the lane a
message travels on, ``┼`` one end closing (``╎`` until the other end does).
Control lines are drawn ``───``, data ``═══``, a connect ``┄┄┄``; a message
only one side's log shows is drawn ``╌╌╌`` and says so. A legend says it
under the diagram.

Both :func:`diagram` and :func:`summary` return rich renderables, so a
notebook displays them directly and a terminal prints them::

    from trace.diagram import diagram, summary
    diagram("session.log")          # in a notebook cell
    summary("session.log")

The command line (``python -m trace.view``) uses :class:`Painter` directly,
one step at a time, so that it can stream a log of any length.
"""

from __future__ import annotations

import os
from typing import Iterable

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.jupyter import JupyterMixin
from rich.table import Table
from rich.text import Text

from . import model
from . import presentation as words
from .model import CLIENT, CLOSE, DATA, LINE, NOTE, OPEN, Session, Step
from .printable import printable
from .selection import Selection
from .units import format_bytes, format_duration, format_rate

# One colour per channel, so the eye can follow a connection down the page.
CHANNEL_STYLE = {"control": "cyan", "data": "magenta", None: "white"}
ERROR_STYLE = "bold red"
NOTE_STYLE = {"header": "dim", "listen": "dim", "transfer": "bold", "error": ERROR_STYLE,
              "unknown": "yellow"}
VERDICT_STYLE = {"verified": "green", "ok": "green", "unverified": "yellow",
                 "mismatch": ERROR_STYLE, "aborted": ERROR_STYLE, "unfinished": ERROR_STYLE}

TIME_WIDTH = 10         # "  0.013412": seconds since the first event
MIN_LANES = 3           # room for the control lane, a data lane, and the word 'lanes'
MIN_BODY = 24           # the arrows need some room even in a narrow terminal


class Painter:
    """Turns steps into lines of text, remembering which lanes are open.

    ``add`` returns the rows a step produces (none while data segments are
    being folded together); ``finish`` returns what is still held back. A
    row is a pair ``(time, Text)``: the time lets a live replay keep pace.
    """

    def __init__(self, width: int, start: float | None, *, verbose: bool = False,
                 channel: str | None = None, conn: int | None = None):
        self.width = width
        self.start = start
        self.verbose = verbose
        self.selection = Selection(channel, conn)
        self.lanes: list = []          # column -> Connection using it, or None when free
        self.half_closed: set = set()  # connections one end of which has closed
        self.fold: _Fold | None = None  # consecutive data segments not yet drawn

    # -- what to show ---------------------------------------------------------------
    def wanted(self, step: Step) -> bool:
        return self.selection.step(step)

    def header(self) -> Text:
        row = Text("time (s)".rjust(TIME_WIDTH), style="bold")
        row.append(" " + "lanes".ljust(self._gutter_width()) + " ", style="bold")
        body = self._body_width()
        row.append("client".ljust(body - len("server")) + "server", style="bold")
        return row

    def add(self, step: Step) -> list[tuple[float, Text]]:
        if self.start is None:
            self.start = step.t
        if not self.wanted(step):
            return []
        if step.kind == DATA and not self.verbose:
            if self.fold is not None and self.fold.takes(step):
                self.fold.add(step)
                return []
            rows = self.finish()
            self.fold = _Fold(step)
            return rows
        rows = self.finish()
        rows.append((step.t, self._row(step)))
        return rows

    def legend(self) -> Text:
        """What the glyphs mean, for the foot of the diagram."""
        return Text("lanes:  ┬ opens  ● message  ┼ one end closes  ╎ half-closed  ┴ closed\n"
                    "arrows: ─ control  ═ data  ┄ connect  ╌ seen by one side only", style="dim")

    def finish(self) -> list[tuple[float, Text]]:
        """Draw the folded data segments held back, if any."""
        if self.fold is None:
            return []
        fold, self.fold = self.fold, None
        return [(fold.first.t, self._row(fold.first, label=fold.label()))]

    # -- one row ----------------------------------------------------------------------
    def _row(self, step: Step, label: str | None = None) -> Text:
        row = Text(f"{step.t - self.start:{TIME_WIDTH}.6f}", style="dim", no_wrap=True)
        row.append(" ")
        row.append_text(self._gutter(step))
        row.append(" ")
        row.append_text(self._body(step, label))
        row.truncate(self.width)
        return row

    def _gutter(self, step: Step) -> Text:
        connection = step.connection
        column = None
        if connection is not None:
            # A note about a connection marks its lane but never reopens it.
            column = self._column_of(connection, allocate=step.kind != NOTE)
        gutter = Text()
        for index, lane in enumerate(self.lanes):
            if lane is None:
                gutter.append("  ")
                continue
            style = CHANNEL_STYLE.get(lane.channel, "white")
            if index != column:
                # A dotted lane: one end has closed, the other has not yet.
                gutter.append("╎ " if lane in self.half_closed else "│ ", style=style)
            elif step.kind == OPEN:
                gutter.append("┬ ", style=style)
            elif step.kind == CLOSE and step.final:
                gutter.append("┴ ", style=style)
                self.lanes[index] = None        # the column is free for the next connection
                self.half_closed.discard(lane)
            elif step.kind == CLOSE:
                gutter.append("┼ ", style=style)
                self.half_closed.add(lane)
            elif step.kind in (LINE, DATA):
                gutter.append("● ", style=style)
            else:
                gutter.append("│ ", style=style)
        gutter.append(" " * (self._gutter_width() - len(gutter)))
        return gutter

    def _column_of(self, connection, allocate: bool) -> int | None:
        for index, lane in enumerate(self.lanes):
            if lane is connection:
                return index
        if not allocate:
            return None
        # A new lane takes the leftmost free column, so lanes stay compact.
        for index, lane in enumerate(self.lanes):
            if lane is None:
                self.lanes[index] = connection
                return index
        self.lanes.append(connection)
        return len(self.lanes) - 1

    def _gutter_width(self) -> int:
        return 2 * max(MIN_LANES, len(self.lanes))

    def _body_width(self) -> int:
        return max(MIN_BODY, self.width - TIME_WIDTH - 2 - self._gutter_width())

    def _body(self, step: Step, label: str | None) -> Text:
        width = self._body_width()
        connection = step.connection
        style = CHANNEL_STYLE.get(step.channel, "white")
        text = label if label is not None else words.step_text(step)
        if step.kind in (LINE, DATA):
            if step.code is not None and step.code >= 400:
                style = ERROR_STYLE
            dashed = step.seen != "both"
            if dashed:
                text = words.one_side(text, step)
                style += " dim"
            fill = "╌" if dashed else ("─" if step.kind == LINE else "═")
            return _arrow(text, width, step.sender == CLIENT, fill, style)
        if step.kind == OPEN:
            if connection.connector is None:
                return _centred(text, width, style)
            return _arrow(text, width, connection.connector == CLIENT, "┄", "bold " + style)
        if step.kind == CLOSE:
            return _note(text, width, step.role, style)
        # A note stands over the side that wrote it.
        note_style = NOTE_STYLE.get(step.style, "")
        if step.style == "transfer":
            note_style += " " + CHANNEL_STYLE["data"]
        return _note(text, width, step.role, note_style)


class _Fold:
    """Consecutive data segments of one connection, drawn as one line with totals."""

    def __init__(self, step: Step):
        self.first = step
        self.count = 1
        self.total = step.length
        self.low = step.offset
        self.high = step.offset + step.length
        self.t_last = step.t

    def takes(self, step: Step) -> bool:
        first = self.first
        return (step.connection is first.connection and step.sender == first.sender
                and step.seen == first.seen)

    def add(self, step: Step) -> None:
        self.count += 1
        self.total += step.length
        self.low = min(self.low, step.offset)
        self.high = max(self.high, step.offset + step.length)
        self.t_last = step.t

    def label(self) -> str:
        return words.folded_segments_text(self.total, self.low, self.high, self.count,
                                          self.t_last - self.first.t)


def _arrow(label: str, width: int, rightward: bool, fill: str, style: str) -> Text:
    """``───── label ─────▶`` (or pointing left), exactly ``width`` wide."""
    room = width - 1                      # one cell for the arrow head
    label = f" {label} "
    if len(label) > room - 2:
        label = label[:max(0, room - 3)] + "… "
    left = (room - len(label)) // 2
    right = room - len(label) - left
    line = fill * left + label + fill * right
    return Text(line + "▶" if rightward else "◀" + line, style=style)


def _centred(label: str, width: int, style: str) -> Text:
    return Text(label[:width].center(width).rstrip(), style=style)


def _note(label: str, width: int, role: str | None, style: str) -> Text:
    """A note over the client (left), the server (right), or the middle."""
    label = label if len(label) <= width else label[:width - 1] + "…"
    if role == CLIENT:
        return Text(label, style=style)
    if role == model.SERVER:
        return Text(label.rjust(width), style=style)
    return _centred(label, width, style)


# --- the renderables a notebook displays --------------------------------------------

class SequenceDiagram(JupyterMixin):
    """The sequence diagram of some steps, drawn at whatever width it is given."""

    def __init__(self, steps: list[Step], start: float | None, *, verbose: bool = False,
                 channel: str | None = None, conn: int | None = None):
        self.steps, self.start = steps, start
        self.options = dict(verbose=verbose, channel=channel, conn=conn)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        painter = Painter(options.max_width, self.start, **self.options)
        yield painter.header()
        for step in self.steps:
            for _time, row in painter.add(step):
                yield row
        for _time, row in painter.finish():
            yield row
        yield painter.legend()


def diagram(source, *, verbose: bool = False, channel: str | None = None,
            conn: int | None = None) -> SequenceDiagram:
    """The sequence diagram of a log (a path) or of events (e.g. ``trace.load(...)``)."""
    session, steps = model.build(_events(source))
    return SequenceDiagram(steps, session.start, verbose=verbose, channel=channel, conn=conn)


class Summary(JupyterMixin):
    """Tables of connections, transfers and errors, for a finished session."""

    def __init__(self, session: Session, *, channel: str | None = None,
                 conn: int | None = None):
        self.session, self.selection = session, Selection(channel, conn)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        session, chosen = self.session, self.selection
        yield _overview(session)
        connections = [c for c in session.connections if chosen.connection(c)]
        yield Text()
        yield _connections_table(session, connections, narrow=options.max_width < 100)
        yield from _not_listed(session.connection_count - len(session.connections), "connection")
        transfers = [t for t in session.transfers if chosen.transfer(t)]
        if transfers:
            yield Text()
            yield _transfers_table(session, transfers)
        yield from _not_listed(session.transfer_count - len(session.transfers), "transfer")
        errors = [e for e in session.errors if chosen.error(e)]
        yield Text()
        if errors:
            yield _errors_table(session, errors)
        else:
            yield Text("No error replies.", style="green")
        yield from _not_listed(session.error_count - sum(e.count for e in session.errors),
                               "error")


def summary(source, *, channel: str | None = None, conn: int | None = None) -> Summary:
    """The summary of a finished :class:`Session`, a log (a path), or events."""
    if not isinstance(source, Session):
        session = Session(segments=False)     # the summary needs no steps: keep none
        for event in _events(source):
            session.feed(event)
        session.finish()
        source = session
    return Summary(source, channel=channel, conn=conn)


def _events(source) -> Iterable:
    if isinstance(source, (str, os.PathLike)):
        from .reader import load
        return load(source)
    return source


# --- the summary's parts ---------------------------------------------------------------

def _overview(session: Session) -> Text:
    span = (session.end - session.start) if session.start is not None else 0.0
    channels = session.channel_counts
    roles = printable("+".join(sorted(session.roles_seen)) or "nobody")
    return Text(
        f"Session of {format_duration(span)}, {_plural(session.events_used, 'event')} "
        f"({roles}): {_plural(session.connection_count, 'connection')} "
        f"({channels.get('control', 0)} control, {channels.get('data', 0)} data), "
        f"{_plural(session.transfer_count, 'transfer')}, "
        f"{_plural(session.error_count, 'error')}", style="bold")


def _not_listed(count: int, what: str):
    """The summary keeps the first so many records of a kind (trace.model.KEEP_*)."""
    if count > 0:
        yield Text(f"… and {_plural(count, 'more ' + what)} not listed (counted above)",
                   style="dim")


def _since(session: Session, t: float | None) -> str:
    return "open" if t is None else f"{t - session.start:.4f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n:,} {word}s"


def _connections_table(session: Session, connections, narrow: bool = False) -> Table:
    table = _table("Connections")
    # "to server" is what the client sent, "to client" what the server sent.
    # In a narrow (80-column) terminal, who connected and when give way to
    # the rest: the diagram shows them.
    columns = ["#", "channel", "client", "server", "by", "open s", "close s",
               "lifetime", "to server", "to client"]
    if narrow:
        columns = [name for name in columns if name not in ("by", "open s", "close s")]
    if any(not c.paired for c in connections):
        columns.append("logs")
    right = {"#", "open s", "close s", "lifetime", "to server", "to client"}
    for name in columns:
        table.add_column(name, justify="right" if name in right else "left", no_wrap=True)
    for c in connections:
        lifetime = c.lifetime
        cells = {"#": c.label, "channel": Text(c.channel, style=CHANNEL_STYLE.get(c.channel, "")),
                 "client": Text(printable(c.client_address or "?")),
                 "server": Text(printable(c.server_address or "?")),
                 "by": c.connector or "?",
                 "open s": _since(session, c.t_open), "close s": _since(session, c.t_close),
                 "lifetime": format_duration(lifetime) if lifetime is not None else "-",
                 "to server": format_bytes(c.bytes_from(CLIENT)),
                 "to client": format_bytes(c.bytes_from(model.SERVER)), "logs": c.seen_by}
        table.add_row(*(cells[name] for name in columns))
    return table


def _table(title: str, style: str = "bold") -> Table:
    """A compact table (a rule under the header, one space between columns),
    so that the connections fit in 100 columns."""
    return Table(title=title, title_justify="left", title_style=style, header_style=style,
                 box=box.SIMPLE_HEAD, pad_edge=False, padding=0, show_edge=False)


def _transfers_table(session: Session, transfers) -> Table:
    table = _table("Transfers")
    for name in ("command", "path", "direction", "conn", "bytes", "duration", "throughput",
                 "verdict"):
        right = name in ("bytes", "duration", "throughput")
        table.add_column(name, justify="right" if right else "left",
                         no_wrap=name != "path", min_width=8 if name == "path" else None)
    for t in transfers:
        rate = t.throughput
        verdict = t.verdict
        if verdict not in ("ok", "verified") and len(t.sides) == 2:
            # When it went wrong, say who noticed.
            verdict += " (" + ", ".join(f"{role}: {side['verdict']}"
                                        for role, side in sorted(t.sides.items())) + ")"
        # Text(), not a plain string: rich would read "[...]" in a path as markup.
        table.add_row(Text(printable(t.command)), Text(printable(t.path)),
                      Text(printable(t.direction)),
                      t.connection.label if t.connection else "?",
                      f"{t.bytes:,} B", format_duration(t.duration),
                      format_rate(rate) if rate is not None else "-",
                      Text(printable(verdict), style=VERDICT_STYLE.get(t.verdict, ERROR_STYLE)))
    return table


def _errors_table(session: Session, errors) -> Table:
    table = _table("Errors", ERROR_STYLE)
    for name in ("time s", "conn", "from", "code", "message", "in reply to"):
        table.add_column(name, justify="right" if name == "time s" else "left")
    for e in errors:
        message = " ↵ ".join(printable(line.strip()) for line in e.text.splitlines())
        if e.count > 1:
            message += f" (×{e.count:,})"
        table.add_row(_since(session, e.t), e.connection.label if e.connection else "-",
                      e.role, str(e.code) if e.code is not None else "-",
                      Text(message, style=ERROR_STYLE), Text(printable(e.command or "")))
    return table
