"""The autograder's machinery: the implementation under test, the trace it
leaves, and failures that explain themselves (the peers it is tested
against are in peers.py).

Nothing here is mocked. The student's server runs as its own process
(``python -m lab.server --trace FILE``), exactly as the student starts it,
so a server that hangs or crashes is killed with its process and costs one
test. The student's client is driven in this process through its
``FtpClient`` class, traced to a file, against the reference server (the
kit's ``solutions``, or pyftpdlib where a student release has no solutions).
The student's server is driven by Python's ftplib, by the reference client,
and by a raw socket ("probe") that can split and pipeline commands.

A failing check raises :class:`GradingFailure` (what was expected, what
happened). The plugin then prints, as CS144's harness does, the numbered
steps taken so far, read from the trace of the code under test, followed by
the expectation that failed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from trace.model import End, Listener, Session

REPO_ROOT = Path(__file__).resolve().parents[2]

# Every socket the harness opens gives up after this long, so a silent peer
# fails a check in seconds instead of running into the test's timeout.
IO_TIMEOUT = 3.0


# --- failures that explain themselves ------------------------------------------

class GradingFailure(AssertionError):
    """An expectation that did not hold: what, expected, actual, and a hint."""

    def __init__(self, what: str, expected, actual, hint: str = ""):
        self.what, self.expected, self.actual, self.hint = what, expected, actual, hint
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"***** Unsuccessful expectation: {self.what}",
                 f"      expected: {self.expected}",
                 f"      actual:   {self.actual}"]
        if self.hint:
            lines.append(f"      hint:     {self.hint}")
        return "\n".join(lines)


def expect(condition: bool, what: str, expected, actual, hint: str = "") -> None:
    if not condition:
        raise GradingFailure(what, expected, actual, hint)


def expect_equal(actual, expected, what: str, hint: str = "") -> None:
    if actual != expected:
        raise GradingFailure(what, _show(expected), _show(actual), hint)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:300] + f"... ({len(text)} characters)"


# --- the implementation under test ----------------------------------------------

@dataclass(frozen=True)
class Impl:
    """A package with the lab's modules: ``lab``, ``solutions`` or any folder."""
    package: str         # import name, e.g. "lab"
    directory: Path      # the package's folder

    @property
    def name(self) -> str:
        return self.package if self.directory.parent == REPO_ROOT else str(self.directory)

    def env(self) -> dict:
        """Environment for the reference server (the kit's own code, run as the grader)."""
        paths = []
        for path in (str(self.directory.parent), str(REPO_ROOT)):
            if path not in paths:
                paths.append(path)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1")
        env.pop("PYTHONSTARTUP", None)
        return env


def resolve_impl(value: str | None) -> Impl:
    """``--impl``: a package name at the repository root, or a folder."""
    if value is None:
        value = "solutions" if (REPO_ROOT / "solutions" / "server.py").exists() else "lab"
    if "/" not in value and os.sep not in value and (REPO_ROOT / value).is_dir():
        directory = REPO_ROOT / value
    else:
        directory = Path(value).expanduser().resolve()
    if not (directory / "server.py").is_file():
        raise ValueError(f"--impl {value}: {directory} is not a lab package (no server.py there)")
    if not directory.name.isidentifier():
        raise ValueError(f"--impl {value}: the folder's name must be a Python identifier")
    # Never put the submission on this process's sys.path: it runs in the sandbox only.
    return Impl(directory.name, directory)


def reference_available() -> bool:
    """True in the instructor's kit; False in a student release (no solutions/)."""
    return (REPO_ROOT / "solutions" / "ftpclient.py").exists()


# --- steps: what happened so far, for a failing test's report -------------------

class Steps:
    """The sources a failing test's report shows its steps from."""

    def __init__(self):
        self.traces: list[tuple[str, Path]] = []
        self.notes: list[str] = []
        self.logs: list[tuple[str, Path]] = []

    def trace(self, label: str, path: Path) -> None:
        self.traces.append((label, Path(path)))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def log(self, label: str, path: Path) -> None:
        self.logs.append((label, Path(path)))

    def render(self, limit: int = 60) -> str:
        out = []
        for label, path in self.traces:
            events = read_events(path)
            lines = describe(events)[0]
            if not lines:
                out.append(f"Steps ({label}): none: its trace has no socket events"
                           + (" (not even a header)" if not events else ""))
                continue
            out.append(f"Steps so far (from the trace of {label}):")
            if len(lines) > limit:
                out.append(f"  ... {len(lines) - limit} earlier steps left out ...")
                lines = lines[-limit:]
            out.extend(lines)
        if self.notes:
            out.append("Steps taken by the grader:")
            out.extend(f"  {n:3d}. {note}" for n, note in enumerate(self.notes, 1))
        for label, path in self.logs:
            try:
                with open(path, "rb") as log:
                    text = log.read(1 << 20).decode("utf-8", "replace").strip()
            except OSError:
                continue
            if text:
                tail = text.splitlines()[-15:]
                out.append(f"{label} printed (last lines):")
                # Paths into the sandbox's copy read as the student's own: lab/server.py.
                out.extend(f"  | {SANDBOX_PATH.sub('', line)[:300]}" for line in tail)
        return "\n".join(out)


SANDBOX_PATH = re.compile(r"/\S*?/ftpkit-grading-[^/\s]+/code/")


# A trace the student's code wrote may be huge (a busy loop traces every
# empty recv, until RLIMIT_FSIZE stops it): the grader reads its first and
# last MAX_TRACE_BYTES / 2 only, so a failure is explained in a second.
MAX_TRACE_BYTES = 1 << 20
_read_cache: dict = {}


def read_events(path: Path, limit: int = MAX_TRACE_BYTES) -> list:
    """The events of one trace log in time order, through the kit's reader
    (``trace.read_log``, ``in_time_order``); lines that are not events are passed over.
    A failing test's report reads the same traces several times: read once."""
    try:
        stat = os.stat(path)
    except OSError:
        return []
    key = (str(path), stat.st_size, stat.st_mtime_ns, limit)
    if key not in _read_cache:
        if len(_read_cache) > 16:
            _read_cache.clear()
        _read_cache[key] = _read_events(path, limit)
    return list(_read_cache[key])


def _read_events(path: Path, limit: int) -> list:
    import io

    import trace
    try:
        with open(path, "rb") as log:
            size = os.fstat(log.fileno()).st_size
            if size <= limit:
                source = io.BytesIO(log.read(limit))
            else:
                head = log.read(limit // 2)
                head = head[:head.rfind(b"\n") + 1]
                log.seek(size - limit // 2)
                tail = log.read(limit // 2)
                tail = tail[tail.find(b"\n") + 1:]
                source = io.BytesIO(head + tail)
    except OSError:
        return []
    from trace.reader import in_time_order
    try:
        return list(in_time_order(trace.read_log(str(path), on_problem=lambda problem: None, stream=source)))
    except (trace.TraceError, ValueError):
        return []


def describe(events: list) -> tuple[list[str], dict[int, int]]:
    """Numbered, one line per step; consecutive data sends or recvs merged, and
    repeated ends of stream on one connection folded into one line.

    Returns the lines and, for each event index, the number of its step, so a
    check can name the steps it is about ("step 17, the 226")."""
    # A step here is a socket call of one process, not a step of the kit's
    # diagram (trace.records.Step, worded by trace.presentation): the diagram
    # draws messages, a control line as one arrow however recv cut it and a
    # recv of b'' as part of the close, and leaves out a listener's close. The
    # bugs these lists explain are in the calls (a recv that is not a line, a
    # loop on b''), so they are listed from the events as the process made them.
    lines: list[str] = []
    step_of: dict[int, int] = {}
    merged = None          # [type, conn, count, bytes, first offset, event indexes] of a run

    def flush():
        nonlocal merged
        if merged:
            kind, who, count, total, first, indexes = merged
            if kind == "eof":
                text = "end of stream: the peer closed its side"
                if count > 1:
                    text += (f" (recv returned b'' {count} times in a row: a loop that kept reading "
                             "after the end of the stream)")
                lines.append(f"{who:<12} {'recv':<8} {text}")
            else:
                verb = "sent" if kind == "send" else "received"
                lines.append(f"{who:<12} {kind:<8} {total} bytes {verb} ({count} call{'s' * (count > 1)}, "
                             f"stream offset {first}-{first + total - 1})")
            for index in indexes:
                step_of[index] = len(lines)
            merged = None

    for index, event in enumerate(events):
        kind = event.get("type")
        if kind in ("header", "command", "reply", None):
            continue
        who = f"{event.get('channel', '')} #{event.get('conn', '')}" if "channel" in event else ""
        if kind in ("send", "recv") and event.get("channel") == "data" and event.get("len", 0) > 0 \
                and isinstance(event.get("len"), int):
            if merged and merged[0] == kind and merged[1] == who:
                merged[2] += 1
                merged[3] += event["len"]
                merged[5].append(index)
            else:
                flush()
                merged = [kind, who, 1, event["len"], event.get("offset", 0), [index]]
            continue
        if kind == "recv" and event.get("len", 0) == 0:
            if merged and merged[0] == "eof" and merged[1] == who:
                merged[2] += 1
                merged[5].append(index)
            else:
                flush()
                merged = ["eof", who, 1, 0, 0, [index]]
            continue
        flush()
        if kind == "listen":
            text = f"listen on {event.get('local')}"
        elif kind == "accept":
            text = f"accepted from {event.get('remote')} (listener #{event.get('listener')})"
        elif kind == "connect":
            text = f"connected to {event.get('remote')}"
        elif kind in ("send", "recv"):
            text = repr(event["text"]) if "text" in event else f"{event.get('len')} bytes"
        elif kind == "close":
            text = "closed" if event.get("remote") is None else \
                f"closed (sent {event.get('sent')}, received {event.get('received')} bytes)"
            if event.get("remote") is None:
                text = "stopped listening"
        elif kind == "transfer_start":
            text = f"{event.get('command')} {event.get('path')}: transfer starts"
        elif kind == "transfer_end":
            text = f"{event.get('command')} {event.get('path')}: transfer ends, {event.get('bytes')} bytes, " \
                   f"{event.get('verdict')}"
        elif kind == "error":
            text = f"error: {event.get('message')}"
        else:
            text = json.dumps({k: v for k, v in event.items() if k not in ("t", "seq", "pid", "role")})
        lines.append(f"{who:<12} {kind:<8} {str(text)[:300]}")
        step_of[index] = len(lines)
    flush()
    return [f"  {n:3d}. {line}" for n, line in enumerate(lines, 1)], step_of


# --- trace analysis: the two-channel design --------------------------------------

class Trace:
    """One process's trace: its events, and the kit's model of them
    (:class:`trace.model.Session`), whose ends and listeners a check reads:
    ``conn``, ``channel``, ``how``, ``local``, ``listener``, and the index in
    ``events`` where each ``opened`` and ``closed`` (None while open)."""

    def __init__(self, events: list[dict]):
        self.events = events

    @functools.cached_property
    def session(self) -> Session:
        """The model, made the first time a check asks about connections (a
        diagnosis often needs only the events). segments=False: the facts of
        the ends, without a diagram step for every data segment."""
        session = Session(on_problem=lambda problem: None, segments=False)
        for event in self.events:
            session.feed(event)
        return session

    @classmethod
    def load(cls, path: Path) -> "Trace":
        return cls(read_events(path))

    def step(self, index: int) -> int | None:
        """The number of the step (as a failing test's report lists them) that
        shows event ``index``; a command or reply is shown by the send or recv
        that carried its bytes."""
        if index in self._step_of:
            return self._step_of[index]
        event = self.events[index]
        offset, conn = event.get("offset"), event.get("conn")
        for other in range(max(0, index - 20), min(len(self.events), index + 20)):
            carrier = self.events[other]
            if carrier.get("type") in ("send", "recv") and carrier.get("conn") == conn \
                    and isinstance(offset, int) and isinstance(carrier.get("offset"), int) \
                    and carrier["offset"] <= offset < carrier["offset"] + max(1, carrier.get("len", 0)) \
                    and other in self._step_of:
                return self._step_of[other]
        later = [self._step_of[i] for i in range(index, len(self.events)) if i in self._step_of]
        return later[0] if later else None

    @functools.cached_property
    def _step_of(self) -> dict[int, int]:
        return describe(self.events)[1]

    def of(self, channel: str, how: str | None = None) -> list[End | Listener]:
        """The ends and listeners of a channel that opened in this trace, in the order they opened."""
        found = [c for c in [*self.session.ends, *self.session.listeners]
                 if c.opened is not None and c.channel == channel and (how is None or c.how == how)]
        return sorted(found, key=lambda c: c.opened)

    def _lines(self, kind: str, direction: str) -> list[tuple[int, object, str]]:
        """(event index, code, text) of each reply, (event index, verb, argument) of each command."""
        first, second = ("code", "text") if kind == "reply" else ("verb", "arg")
        return [(i, e[first], e.get(second, "")) for i, e in enumerate(self.events)
                if e.get("type") == kind and e.get("dir") == direction]

    def replies_sent(self) -> list[tuple[int, int, str]]:
        """(event index, code, text) of every reply this process sent."""
        return self._lines("reply", "out")

    def replies_received(self) -> list[tuple[int, int, str]]:
        return self._lines("reply", "in")

    def commands_received(self) -> list[tuple[int, str, str]]:
        """(event index, verb, argument) of every command this process received."""
        return self._lines("command", "in")

    def commands_sent(self) -> list[tuple[int, str, str]]:
        return self._lines("command", "out")

    def control_bytes_sent(self) -> bytes:
        """The text this process sent on its control connections, one connection after another.
        The model keeps no bytes (its memory stays flat on a log of any length): they
        are read off the events, which the grader holds anyway."""
        sent: dict[int, list[bytes]] = {c.conn: [] for c in self.of("control") if c.how != "listen"}
        for event in self.events:
            if event.get("type") == "send" and event.get("conn") in sent and "text" in event:
                sent[event["conn"]].append(event["text"].encode("utf-8", "replace"))
        return b"".join(b"".join(texts) for texts in sent.values())

    def wait_for(self, path: Path, predicate, timeout: float = 3.0) -> "Trace":
        """Reload from ``path`` until ``predicate(trace)`` holds or time runs out."""
        deadline = time.monotonic() + timeout
        trace = self
        while not predicate(trace) and time.monotonic() < deadline:
            time.sleep(0.02)
            trace = Trace.load(path)
        return trace


# --- files to move ----------------------------------------------------------------

@functools.lru_cache(maxsize=8)     # the same few payloads in every test: made once a grading
def binary_payload(size: int, seed: int = 1) -> bytes:
    """Bytes that a text-mode copy would damage: every byte value, CR LF pairs,
    lone CRs and LFs, and invalid UTF-8, in a pattern that is not periodic."""
    pattern = bytes(range(256)) + b"\r\n\r\r\n\n\x00\xff\xfe" + b"line\r\n" * 3
    out = bytearray()
    state = seed
    while len(out) < size:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        out += pattern[state % 50:] + state.to_bytes(4, "big")
    return bytes(out[:size])


def make_files(root: Path) -> dict[str, bytes]:
    """The server's files for a test: name -> content."""
    files = {
        "binary.bin": binary_payload(300_000),
        "notes.txt": b"Two channels: commands on one, each file on its own.\r\n" * 50,
        "big.bin": binary_payload(700_000, seed=7),     # bigger than one 256 KiB block
        "docs/readme.txt": b"inside a directory\n",
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def first_difference(a: bytes, b: bytes) -> str:
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first difference at byte {index}: expected {a[index:index + 8]!r}, got {b[index:index + 8]!r}"
    return f"equal for {min(len(a), len(b))} bytes, then one is longer ({len(a)} vs {len(b)} bytes)"


def expect_same_bytes(actual: bytes, expected: bytes, what: str) -> None:
    if actual == expected:
        return
    hint = ""
    if expected.replace(b"\r\n", b"\n") == actual or len(actual) != len(expected) and b"\r\n" in expected:
        hint = "CR LF pairs changed: was the file opened or sent in text mode instead of binary ('rb'/'wb')?"
    raise GradingFailure(what, f"{len(expected)} bytes, sha256 {hashlib.sha256(expected).hexdigest()[:16]}…",
                         f"{len(actual)} bytes, sha256 {hashlib.sha256(actual).hexdigest()[:16]}…; "
                         + first_difference(expected, actual), hint)
