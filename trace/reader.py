"""Read trace logs back as events, merged in time order; follow a live one.

Reading streams: a log of a million events is never held in memory. Lines
from several logs (or from several processes appending to one log) are
merged by timestamp through a small reordering window, because concurrent
appends can land a few lines out of time order.

Input is bounded where it arrives: a line longer than ``MAX_LINE_BYTES``
(the tracer never writes one) is skipped without being held, and JSON
nested too deeply to decode is reported, like any other bad line.

A log that is still being written may end in half a line; that last line is
skipped quietly (or reported through ``on_cut_off``). Anything else wrong
with a line is reported through ``on_problem`` (by default: raise
:class:`TraceError`), naming the file and the line number.

:func:`follow` reads a log as it is written, like ``tail -F``: it waits for
the log to appear, for more lines, for a log replaced by a new one, and
starts again from the top when the log is truncated in place.
"""

from __future__ import annotations

import heapq
import io
import json
import os
import sys
import time
from typing import Callable, Iterable, Iterator

from .printable import printable
from .tracer import MAX_LINE_BYTES
from .validate import header_problem

# How many events may wait in the reordering window. Out-of-order lines come
# from appends racing each other, so they are never more than a few apart.
REORDER_WINDOW = 256
# How often follow() looks for new lines.
POLL_SECONDS = 0.1

_BINARY_MAGIC = {
    b"\xd4\xc3\xb2\xa1": "a pcap capture", b"\xa1\xb2\xc3\xd4": "a pcap capture",
    b"\x4d\x3c\xb2\xa1": "a pcap capture", b"\xa1\xb2\x3c\x4d": "a pcap capture",
    b"\x0a\x0d\x0d\x0a": "a pcapng capture", b"\x1f\x8b\x08": "a gzip file",
    b"PK\x03\x04": "a zip file",
}


class TraceError(Exception):
    """A problem with a log, phrased as one line for the user.

    The line is safe to print: a file name or a field the log made up is
    shown with its control characters escaped (trace.printable).
    """

    def __init__(self, source: str, lineno: int | None, message: str):
        self.source, self.lineno, self.message = source, lineno, message
        where = f"{source}:{lineno}" if lineno else source
        super().__init__(printable(f"{where}: {message}"))


class Event(dict):
    """One trace event: a dict of its JSON fields, with attribute access.

    ``event.source`` and ``event.lineno`` say where it was read from.
    """

    __slots__ = ("source", "lineno")

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


Problem = Callable[[TraceError], None]


def _raise(problem: TraceError) -> None:
    raise problem


def describe_binary(head: bytes) -> str | None:
    """Name what a non-text file probably is, from its first bytes."""
    for magic, what in _BINARY_MAGIC.items():
        if head.startswith(magic):
            return what
    if b"\0" in head[:512]:
        return "a binary file"
    return None


def source_name(path) -> str:
    return "<stdin>" if path == "-" else os.fspath(path)


def _open(path, source: str):
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise TraceError(source, None, "no such file") from None
    except IsADirectoryError:
        raise TraceError(source, None, "is a directory, not a trace log") from None
    except OSError as err:
        raise TraceError(source, None, err.strerror or str(err)) from None


def read_log(path: str | os.PathLike | io.IOBase, on_problem: Problem = _raise,
             stream=None, on_cut_off: Problem | None = None) -> Iterator[Event]:
    """Yield the events of one log in file order.

    ``path`` may be ``"-"`` for standard input. ``stream`` (a binary file
    object) overrides opening ``path``, which then only names the source.
    A last line cut off without its newline is skipped, and reported to
    ``on_cut_off`` if given.
    """
    source = source_name(path)
    stream = _open(path, source) if stream is None else stream
    lines = _Lines(source, stream)
    with stream:
        yield from _parse(source, lines, on_problem, on_cut_off)


def follow(path: str | os.PathLike, on_problem: Problem = _raise, *,
           idle_limit: float | None = None, on_idle: Callable[[float], None] | None = None,
           on_notice: Callable[[str], None] | None = None) -> Iterator[Event]:
    """Yield the events of a log as it is written, in file order (``tail -F``).

    It waits for the log to appear and for more lines; a log replaced by a
    new file (``trace.demo`` deletes the old one) is followed into the new
    one, and a log truncated in place (``copytruncate``) is read again from
    its top. ``on_idle(seconds)`` is called while nothing new comes; after
    ``idle_limit`` quiet seconds it ends. ``on_notice`` hears what it does
    (by default, on stderr).
    """
    source = source_name(path)
    notice = on_notice or (lambda text: print(printable(text), file=sys.stderr, flush=True))
    if not _wait_for(path, idle_limit, notice):
        raise TraceError(source, None, "no such file")
    stream = _open(path, source)
    lines = _Lines(source, stream, tail=_Tail(path, idle_limit, on_idle, notice))
    try:
        yield from _parse(source, lines, on_problem, on_problem)
    finally:
        lines.stream.close()


def _wait_for(path, idle_limit: float | None, notice) -> bool:
    """A log that does not exist yet is waited for; False if it never came."""
    if os.path.exists(path):
        return True
    notice(f"{path}: waiting for the log to appear")
    started = time.monotonic()
    while not os.path.exists(path):
        if idle_limit is not None and time.monotonic() - started >= idle_limit:
            return False
        time.sleep(POLL_SECONDS)
    return True


class _Tail:
    """What follow() does at the end of what is written so far."""

    def __init__(self, path, idle_limit, on_idle, notice):
        self.path, self.idle_limit, self.on_idle, self.notice = path, idle_limit, on_idle, notice
        self.quiet_since = time.monotonic()

    def got_line(self) -> None:
        self.quiet_since = time.monotonic()

    def at_end(self, lines: "_Lines") -> bool:
        """Wait until there may be more to read; False: stop."""
        quiet = time.monotonic() - self.quiet_since
        if self.idle_limit is not None and quiet >= self.idle_limit:
            return False
        try:
            now = os.stat(self.path)
        except OSError:
            now = None                     # gone for now: wait for it to come back
        current = os.fstat(lines.stream.fileno())
        if now is not None and now.st_ino != current.st_ino:
            # A new session was started into the same path: carry on with the new file.
            self.notice(f"{self.path}: replaced by a new log; following that")
            lines.restart(open(self.path, "rb"))
            return True
        if current.st_size < lines.stream.tell():
            # Truncated in place (logrotate's copytruncate): what comes next
            # is written from the top, and would be missed reading on from here.
            self.notice(f"{self.path}: truncated; reading it again from the start")
            lines.stream.seek(0)
            lines.restart(lines.stream)
            return True
        if self.on_idle is not None:
            self.on_idle(quiet)
        time.sleep(POLL_SECONDS)
        return True


class _Lines:
    """The raw lines of one log, numbered, none longer than MAX_LINE_BYTES.

    Iterating yields ``(lineno, raw)``: ``raw`` ends in a newline, except
    for a last line cut off (``cut_off`` is then true); it is None for a
    line that was too long, which was skipped without being held in memory.
    With a ``tail`` it never ends at the end of the file but asks the tail.
    """

    def __init__(self, source: str, stream, tail: _Tail | None = None):
        self.source, self.stream, self.tail = source, stream, tail
        self.lineno = 0
        self.cut_off = False
        self._partial = b""
        self._skipping = False        # inside a line that is too long

    def restart(self, stream) -> None:
        if stream is not self.stream:
            self.stream.close()
        self.stream = stream
        self.lineno, self._partial, self._skipping = 0, b"", False

    def __iter__(self):
        while True:
            room = MAX_LINE_BYTES + 1 - len(self._partial)
            chunk = self.stream.readline(1 << 16 if self._skipping else room)
            if chunk:
                if self.lineno == 0 and not self._partial and not self._skipping:
                    what = describe_binary(chunk)
                    if what:
                        raise TraceError(self.source, None,
                                         f"this is {what}, not a trace log (JSON Lines)")
                yield from self._take(chunk)
                continue
            if self.tail is None or not self.tail.at_end(self):
                break
        if self._partial:
            self.lineno += 1
            self.cut_off = True
            yield self.lineno, self._partial
        elif self._skipping:
            self.lineno += 1
            yield self.lineno, None

    def _take(self, chunk: bytes):
        if self._skipping:
            if chunk.endswith(b"\n"):
                self._skipping = False
                self.lineno += 1
                yield self.lineno, None
            return
        self._partial += chunk
        if self._partial.endswith(b"\n"):
            line, self._partial = self._partial, b""
            self.lineno += 1
            if self.tail is not None:
                self.tail.got_line()
            yield self.lineno, line
        elif len(self._partial) > MAX_LINE_BYTES:
            self._partial, self._skipping = b"", True


def _parse(source: str, lines: _Lines, on_problem: Problem,
           on_cut_off: Problem | None) -> Iterator[Event]:
    decode = json.JSONDecoder(object_pairs_hook=Event).decode
    seen_any = False
    for lineno, raw in lines:
        if raw is None:
            on_problem(TraceError(source, lineno, f"line longer than {MAX_LINE_BYTES} bytes; "
                                                  "skipped"))
            continue
        try:
            event = decode(raw.decode("utf-8"))
        except UnicodeDecodeError:
            event = _NOT_UTF8
        except ValueError as err:
            event = _NotJSON(err.msg)
        except RecursionError:
            event = _NotJSON("nested too deeply")
        if lines.cut_off:
            # The last line of a log still being written: wait for the rest.
            if isinstance(event, Event):
                pass
            else:
                if on_cut_off is not None and raw.strip():
                    on_cut_off(TraceError(source, lineno, "the last line is cut off (was the "
                                                          "log still being written?); skipped"))
                return
        if event is _NOT_UTF8:
            on_problem(TraceError(source, lineno, "line is not UTF-8 text"))
            continue
        if isinstance(event, _NotJSON):
            if raw.strip():
                on_problem(TraceError(source, lineno, f"line is not JSON ({event.msg})"))
            continue
        if not isinstance(event, Event) or not isinstance(event.get("type"), str):
            on_problem(TraceError(source, lineno, "line is not a trace event (no \"type\")"))
            continue
        if not _orderable(event):
            on_problem(TraceError(source, lineno, f"{event['type']} event has no valid "
                                                  "'t', 'pid' or 'seq'"))
            continue
        if event["type"] == "header":
            problem = header_problem(event)
            if problem is not None:
                on_problem(TraceError(source, lineno, problem))
        event.source, event.lineno = source, lineno
        seen_any = True
        yield event
    if not seen_any and lines.lineno == 0:
        raise TraceError(source, None, "the log is empty")


_NOT_UTF8 = object()


class _NotJSON:
    def __init__(self, msg: str):
        self.msg = msg


def _orderable(event: Event) -> bool:
    """Merging sorts by (t, pid, seq): they must be numbers to compare."""
    return (isinstance(event.get("t", 0.0), (int, float)) and isinstance(event.get("pid", 0), int)
            and isinstance(event.get("seq", 0), int))


def time_order_key(event: Event):
    """Events sort by time; equal times by process, then by its sequence."""
    return (event.get("t", 0.0), event.get("pid", 0), event.get("seq", 0))


def in_time_order(events: Iterable[Event], window: int = REORDER_WINDOW) -> Iterator[Event]:
    """The events of one log in time order, holding at most ``window`` of them."""
    heap: list = []
    for n, event in enumerate(events):
        heapq.heappush(heap, (time_order_key(event), n, event))
        if len(heap) > window:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def merge(streams: list[Iterable[Event]]) -> Iterator[Event]:
    """Merge several logs' event streams (each from read_log) in time order."""
    ordered = [in_time_order(stream) for stream in streams]
    if len(ordered) == 1:
        return ordered[0]
    return heapq.merge(*ordered, key=time_order_key)


def load(*paths, on_problem: Problem = _raise) -> Iterator[Event]:
    """Yield the events of one or more logs, merged in time order."""
    if len(paths) == 1 and isinstance(paths[0], (list, tuple)):
        paths = tuple(paths[0])
    return merge([read_log(p, on_problem) for p in paths])
