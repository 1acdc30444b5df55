"""Read trace logs back as events, merged in time order.

Reading streams: a log of a million events is never held in memory. Lines
from several logs (or from several processes appending to one log) are
merged by timestamp through a small reordering window, because concurrent
appends can land a few lines out of time order.

A log that is still being written may end in half a line; that last line is
skipped quietly. Anything else wrong with a line is reported through
``on_problem`` (by default: raise :class:`TraceError`), naming the file and
the line number.
"""

from __future__ import annotations

import heapq
import io
import json
import os
import sys
from typing import Callable, Iterable, Iterator

from .tracer import FORMAT, SCHEMA_VERSION

# How many events may wait in the reordering window. Out-of-order lines come
# from appends racing each other, so they are never more than a few apart.
REORDER_WINDOW = 256

_BINARY_MAGIC = {
    b"\xd4\xc3\xb2\xa1": "a pcap capture", b"\xa1\xb2\xc3\xd4": "a pcap capture",
    b"\x4d\x3c\xb2\xa1": "a pcap capture", b"\xa1\xb2\x3c\x4d": "a pcap capture",
    b"\x0a\x0d\x0d\x0a": "a pcapng capture", b"\x1f\x8b\x08": "a gzip file",
    b"PK\x03\x04": "a zip file",
}


class TraceError(Exception):
    """A problem with a log, phrased as one line for the user."""

    def __init__(self, source: str, lineno: int | None, message: str):
        self.source, self.lineno, self.message = source, lineno, message
        where = f"{source}:{lineno}" if lineno else source
        super().__init__(f"{where}: {message}")


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


def read_log(path: str | os.PathLike | io.IOBase, on_problem: Problem = _raise,
             stream=None) -> Iterator[Event]:
    """Yield the events of one log in file order.

    ``path`` may be ``"-"`` for standard input. ``stream`` (a binary file
    object) overrides opening ``path``, which then only names the source.
    """
    source = "<stdin>" if path == "-" else os.fspath(path)
    if stream is None:
        if path == "-":
            stream = sys.stdin.buffer
        else:
            try:
                stream = open(path, "rb")
            except FileNotFoundError:
                raise TraceError(source, None, "no such file") from None
            except IsADirectoryError:
                raise TraceError(source, None, "is a directory, not a trace log") from None
            except OSError as err:
                raise TraceError(source, None, err.strerror or str(err)) from None
    with stream:
        yield from _parse_lines(source, stream, on_problem)


def _parse_lines(source: str, stream, on_problem: Problem) -> Iterator[Event]:
    decode = json.JSONDecoder(object_pairs_hook=Event).decode
    lineno = 0
    seen_any = False
    for raw in stream:
        lineno += 1
        if lineno == 1:
            what = describe_binary(raw)
            if what:
                raise TraceError(source, None, f"this is {what}, not a trace log (JSON Lines)")
        if not raw.endswith(b"\n"):
            # The last line of a log still being written: wait for the rest.
            try:
                event = decode(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return
        else:
            try:
                event = decode(raw.decode("utf-8"))
            except UnicodeDecodeError:
                on_problem(TraceError(source, lineno, "line is not UTF-8 text"))
                continue
            except ValueError as err:
                if not raw.strip():
                    continue
                on_problem(TraceError(source, lineno, f"line is not JSON ({err.msg})"))
                continue
        if not isinstance(event, Event) or not isinstance(event.get("type"), str):
            on_problem(TraceError(source, lineno, "line is not a trace event (no \"type\")"))
            continue
        if not _orderable(event):
            on_problem(TraceError(source, lineno, f"{event['type']} event has no valid "
                                                  "'t', 'pid' or 'seq'"))
            continue
        if event["type"] == "header":
            _check_header(source, lineno, event, on_problem)
        event.source, event.lineno = source, lineno
        seen_any = True
        yield event
    if not seen_any and lineno == 0:
        raise TraceError(source, None, "the log is empty")


def _check_header(source: str, lineno: int, header: Event, on_problem: Problem) -> None:
    if header.get("format") != FORMAT:
        on_problem(TraceError(source, lineno, f"header says format {header.get('format')!r}, "
                                               f"expected {FORMAT!r}"))
    version = header.get("schema")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        on_problem(TraceError(source, lineno, f"schema version {version} is newer than this "
                                               f"reader understands ({SCHEMA_VERSION}); "
                                               "update the kit"))


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
