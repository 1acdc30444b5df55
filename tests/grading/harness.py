"""The autograder's machinery: the implementation under test, the peers it is
tested against, the trace it leaves, and failures that explain themselves.

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

import ftplib
import functools
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

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

@dataclass
class Conn:
    conn: int
    channel: str
    how: str = ""                     # "accept", "connect" or "listen"
    local: str | None = None
    remote: str | None = None
    listener: int | None = None
    opened: int = -1                  # index of the opening event
    closed: int | None = None         # index of its close event
    sent: bytearray = field(default_factory=bytearray)    # control text only
    sent_bytes: int = 0
    received_bytes: int = 0


class Trace:
    """One process's trace, indexed by connection."""

    def __init__(self, events: list[dict]):
        self.events = events
        self.conns: dict[int, Conn] = {}
        for index, event in enumerate(events):
            kind, conn = event.get("type"), event.get("conn")
            if kind in ("listen", "accept", "connect"):
                self.conns[conn] = Conn(conn, event.get("channel"), kind, event.get("local"),
                                        event.get("remote"), event.get("listener"), index)
            elif kind == "close" and conn in self.conns:
                if self.conns[conn].closed is None:
                    self.conns[conn].closed = index
            elif kind == "send" and conn in self.conns:
                self.conns[conn].sent_bytes += event.get("len", 0)
                if "text" in event:
                    self.conns[conn].sent += event["text"].encode("utf-8", "replace")
            elif kind == "recv" and conn in self.conns:
                self.conns[conn].received_bytes += event.get("len", 0)

    @classmethod
    def load(cls, path: Path) -> "Trace":
        return cls(read_events(path))

    def step(self, index: int) -> int | None:
        """The number of the step (as a failing test's report lists them) that
        shows event ``index``; a command or reply is shown by the send or recv
        that carried its bytes."""
        if not hasattr(self, "_step_of"):
            self._step_of = describe(self.events)[1]
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

    def of(self, channel: str, how: str | None = None) -> list[Conn]:
        return [c for c in self.conns.values() if c.channel == channel and (how is None or c.how == how)]

    def replies_sent(self) -> list[tuple[int, int, str]]:
        """(event index, code, text) of every reply this process sent."""
        return [(i, e["code"], e.get("text", "")) for i, e in enumerate(self.events)
                if e.get("type") == "reply" and e.get("dir") == "out"]

    def replies_received(self) -> list[tuple[int, int, str]]:
        return [(i, e["code"], e.get("text", "")) for i, e in enumerate(self.events)
                if e.get("type") == "reply" and e.get("dir") == "in"]

    def commands_received(self) -> list[tuple[int, str, str]]:
        return [(i, e["verb"], e.get("arg", "")) for i, e in enumerate(self.events)
                if e.get("type") == "command" and e.get("dir") == "in"]

    def commands_sent(self) -> list[tuple[int, str, str]]:
        return [(i, e["verb"], e.get("arg", "")) for i, e in enumerate(self.events)
                if e.get("type") == "command" and e.get("dir") == "out"]

    def control_bytes_sent(self) -> bytes:
        return b"".join(bytes(c.sent) for c in self.of("control"))

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


# --- processes ------------------------------------------------------------------------

class Process:
    """A server process started with ``python -m <package>.server``: the
    student's in the sandbox (``sandbox``), the reference as the grader."""

    def __init__(self, label: str, package: str, env: dict | None, root: Path, workdir: Path,
                 steps: Steps, *extra: str, traced: bool = True, sandbox=None, launcher=None):
        self.label = label
        self.sandbox = sandbox
        workdir.mkdir(parents=True, exist_ok=True)
        self.trace_path = workdir / f"{package}-server-{id(self)}.log"
        self.out_path = workdir / f"{package}-server-{id(self)}.out"
        self.err_path = workdir / f"{package}-server-{id(self)}.err"
        arguments = ["--root", str(root), *extra]
        if traced:
            arguments += ["--trace", str(self.trace_path)]
            steps.trace(label, self.trace_path)
        steps.log(label, self.err_path)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            if sandbox is not None:
                self.process = sandbox.start(sandbox.python(f"{package}.server", arguments + ["0"]), workdir,
                                             out, err)
            elif launcher is not None:          # the reference, forked from a process that imported it once
                with open(os.devnull, "rb") as devnull:
                    self.process = launcher.start(["-m", f"{package}.server", *arguments, "0"], workdir, env,
                                                  {0: devnull.fileno(), 1: out.fileno(), 2: err.fileno()},
                                                  path=[REPO_ROOT])
            else:
                self.process = subprocess.Popen([sys.executable, "-m", f"{package}.server", *arguments, "0"],
                                                cwd=workdir, env=env, stdout=out, stderr=err,
                                                stdin=subprocess.DEVNULL)
        self.host, self.port = self._wait_until_listening()

    def _wait_until_listening(self, timeout: float = 10.0) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.out_path.read_text(errors="replace")
            match = re.search(r"listening on (\S+):(\d+)", text)
            if match:
                return match.group(1), int(match.group(2))
            if self.process.poll() is not None:
                break
            time.sleep(0.01)
        self.stop()
        error = self.err_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise GradingFailure(f"{self.label} starts and prints 'listening on HOST:PORT'",
                             "a listening server", " / ".join(error) or "no output",
                             "run the server by hand: python -m <package>.server --root . 2121")

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def trace(self) -> Trace:
        return Trace.load(self.trace_path)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the probe: a raw control connection the grader types into ----------------------

@dataclass
class Reply:
    code: int
    text: str
    raw: bytes

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class Probe:
    """A control connection driven byte by byte, with its own reply parser."""

    def __init__(self, address: tuple[str, int], steps: Steps, name: str = "probe"):
        self.steps = steps
        self.name = name
        try:
            self.sock = socket.create_connection(address, timeout=IO_TIMEOUT)
        except OSError as err:
            raise GradingFailure(f"{name}: connect to the server at {address[0]}:{address[1]}",
                                 "a connection", f"{type(err).__name__}: {err}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.steps.note(f"{name}: connected to the server's control port {address[1]}")

    def send(self, data: bytes) -> None:
        self.steps.note(f"{self.name}: sent {data!r}")
        try:
            self.sock.sendall(data)
        except OSError as err:
            raise GradingFailure(f"{self.name}: send {data!r} on the control connection",
                                 "the server to keep the connection open", f"{type(err).__name__}: {err}") from None

    def _line(self, what: str) -> bytes:
        while b"\n" not in self.buffer:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise GradingFailure(what, "a reply line ending in CRLF",
                                     f"nothing more within {IO_TIMEOUT:.0f} s"
                                     + (f"; received so far, with no line end: {self.buffer!r}" if self.buffer else ""),
                                     "every reply line must end with CRLF (\\r\\n), and the server must answer "
                                     "each complete command line it has received") from None
            except OSError as err:
                raise GradingFailure(what, "a reply", f"{type(err).__name__}: {err}") from None
            if not chunk:
                raise GradingFailure(what, "a reply", "the server closed the control connection"
                                     + (f" after sending {self.buffer!r}" if self.buffer else ""),
                                     "the session must survive this; see what the server printed, above")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def reply(self, what: str = "a reply") -> Reply:
        raw = self._line(what)
        first = raw.decode("utf-8", "replace").rstrip("\r\n")
        match = re.fullmatch(r"(\d{3})([ -])(.*)", first, re.DOTALL)
        if not match:
            raise GradingFailure(what, "a reply line 'CODE text' (three digits, a space or '-')", repr(raw))
        raw_all, lines = raw, [match.group(3)]
        if match.group(2) == "-":
            while True:
                more = self._line(what)
                raw_all += more
                text = more.decode("utf-8", "replace").rstrip("\r\n")
                if text[:3] == match.group(1) and text[3:4] == " ":
                    lines.append(text[4:])
                    break
                lines.append(text)
        reply = Reply(int(match.group(1)), "\n".join(lines), raw_all)
        self.steps.note(f"{self.name}: received {raw_all!r}")
        return reply

    def command(self, line: str, expected: int | tuple | None = None, what: str | None = None) -> Reply:
        self.send(line.encode("utf-8") + b"\r\n")
        reply = self.reply(what or f"the reply to {line}")
        if expected is not None:
            codes = expected if isinstance(expected, tuple) else (expected,)
            expect(reply.code in codes, what or f"the reply to {line}",
                   " or ".join(map(str, codes)), str(reply))
        return reply

    def login(self) -> None:
        self.reply("the 220 greeting")
        self.command("USER anonymous", (331, 230))
        self.command("PASS guest@", 230)

    def close(self) -> None:
        self.sock.close()


def data_connect(address: tuple[str, int], what: str) -> socket.socket:
    try:
        sock = socket.create_connection(address, timeout=IO_TIMEOUT)
    except OSError as err:
        raise GradingFailure(what, f"a connection to {address[0]}:{address[1]}",
                             f"{type(err).__name__}: {err}") from None
    return sock


def read_to_eof(sock: socket.socket, what: str) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise GradingFailure(what, "the server to close the data connection when the data ends",
                                 f"no end of stream within {IO_TIMEOUT:.0f} s after {sum(map(len, chunks))} bytes",
                                 "closing the data connection is what tells the receiver the file has ended") from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def parse_227(text: str) -> tuple[str, int]:
    """The address a 227 reply announces, read by the kit's one parser (trace.announce)."""
    from trace.announce import parse_announcement
    announced = parse_announcement("227", text)
    if announced is None:
        raise GradingFailure("the 227 reply carries h1,h2,h3,h4,p1,p2", "six numbers", repr(text))
    return announced


# --- clients the student's server is tested with ----------------------------------------

class FtplibClient:
    """Python's ftplib: an FTP client that none of us wrote."""
    name = "ftplib"

    def __init__(self, address: tuple[str, int], steps: Steps, passive: bool = True):
        self.steps = steps
        self.ftp = ftplib.FTP(timeout=IO_TIMEOUT)
        self._do(f"connect to {address[0]}:{address[1]}", self.ftp.connect, *address)
        self._do("log in as anonymous", self.ftp.login)
        self.ftp.set_pasv(passive)

    def _do(self, what: str, call, *args):
        self.steps.note(f"ftplib: {what}")
        try:
            return call(*args)
        except ftplib.all_errors as err:
            hint = ""
            if isinstance(err, (socket.timeout, TimeoutError)):
                hint = ("nothing arrived in time: a reply without CRLF, a data connection never "
                        "accepted or never closed, or a server stuck in a loop")
            raise GradingFailure(f"ftplib: {what}", "success", f"{type(err).__name__}: {err}", hint) from None

    def get(self, remote: str) -> bytes:
        out = bytearray()
        self._do(f"RETR {remote}", self.ftp.retrbinary, f"RETR {remote}", out.extend)
        return bytes(out)

    def put(self, remote: str, data: bytes) -> None:
        self._do(f"STOR {remote}", self.ftp.storbinary, f"STOR {remote}", io.BytesIO(data))

    def names(self, path: str = "") -> list[str]:
        return self._do(f"NLST {path}".rstrip(), self.ftp.nlst, *([path] if path else []))

    def long_list(self, path: str = "") -> list[str]:
        lines: list[str] = []
        self._do(f"LIST {path}".rstrip(), self.ftp.retrlines, f"LIST {path}".rstrip(), lines.append)
        return lines

    def noop(self) -> str:
        return self._do("NOOP", self.ftp.voidcmd, "NOOP")

    def quit(self) -> None:
        self._do("QUIT", self.ftp.quit)

    def close(self) -> None:
        self.ftp.close()


class ReferenceClient:
    """The kit's own client (solutions.ftpclient), with the same methods."""
    name = "reference"

    def __init__(self, address: tuple[str, int], steps: Steps, workdir: Path, passive: bool = True):
        from solutions.ftpclient import FtpClient
        self.steps = steps
        self.workdir = workdir
        self.client = FtpClient(*address, passive=passive, timeout=IO_TIMEOUT)
        self._do("connect", self.client.connect)
        self._do("log in as anonymous", self.client.login)

    def _do(self, what: str, call, *args):
        from solutions.ftpclient import ConnectionLost, FtpError
        self.steps.note(f"reference client: {what}")
        try:
            return call(*args)
        except (FtpError, ConnectionLost, OSError, ValueError) as err:
            raise GradingFailure(f"reference client: {what}", "success", f"{type(err).__name__}: {err}") from None

    def get(self, remote: str) -> bytes:
        local = self.workdir / f"ref-get-{time.monotonic_ns()}"
        self._do(f"get {remote}", self.client.get, remote, str(local))
        return local.read_bytes()

    def put(self, remote: str, data: bytes) -> None:
        local = self.workdir / f"ref-put-{time.monotonic_ns()}"
        local.write_bytes(data)
        self._do(f"put {remote}", self.client.put, str(local), remote)

    def names(self, path: str = "") -> list[str]:
        text = self._do(f"NLST {path}".rstrip(), self.client.listing, path, True)
        return [line for line in text.split("\r\n") if line]

    def long_list(self, path: str = "") -> list[str]:
        text = self._do(f"LIST {path}".rstrip(), self.client.listing, path, False)
        return [line for line in text.split("\r\n") if line]

    def noop(self) -> str:
        return str(self._do("NOOP", self.client.expect, "NOOP"))

    def quit(self) -> None:
        self._do("QUIT", self.client.quit)

    def close(self) -> None:
        self.client.close()


def client_kinds() -> list[str]:
    return ["ftplib", "reference"] if reference_available() else ["ftplib"]


# --- the reference server the student's client is tested against -----------------------

class PyftpdlibServer:
    """Where there is no reference solution (a student release): pyftpdlib,
    with the HASH command of draft-bryan-ftpext-hash added."""

    def __init__(self, root: Path, steps: Steps):
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.servers import ThreadedFTPServer

        class Handler(FTPHandler):
            proto_cmds = dict(FTPHandler.proto_cmds, HASH=dict(
                perm="r", auth=True, arg=True, help="Syntax: HASH <SP> file-name"))
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self._extra_feats = [*self._extra_feats, "HASH SHA-256*"]

            def ftp_HASH(self, path):
                try:
                    with open(path, "rb") as file:
                        content = file.read()
                except OSError:
                    self.respond("550 No such file.")
                    return
                self.respond(f"213 SHA-256 0-{len(content)} {hashlib.sha256(content).hexdigest()} "
                             f"{self.fs.fs2ftp(path)}")

        authorizer = DummyAuthorizer()
        authorizer.add_anonymous(str(root), perm="elradfmw")
        Handler.authorizer = authorizer
        Handler.timeout = 30
        import logging
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        from pyftpdlib.ioloop import IOLoop
        # An IOLoop of its own: the default is a process-wide singleton, which
        # close_all() closes for every later server in this process.
        self.server = ThreadedFTPServer(("127.0.0.1", 0), Handler, ioloop=IOLoop())
        # ThreadedFTPServer's stop flag is one Event shared by every instance: a
        # stopped server would stop the next one's sessions. Give it its own.
        self.server._exit = threading.Event()
        self.host, self.port = self.server.address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"timeout": 0.05},
                                       daemon=True)
        self.thread.start()
        steps.note(f"reference server: pyftpdlib on port {self.port} (untraced)")

    @property
    def address(self):
        return self.host, self.port

    def trace(self) -> Trace:
        return Trace([])

    def stop(self) -> None:
        self.server.close_all()
