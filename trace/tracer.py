"""Write trace events as JSON Lines, and the traced socket that emits them.

The tracer sits at the I/O boundary. Programs never call it for ordinary
traffic: they hand each new socket to :func:`connected` or :func:`listening`
(the helper module does this for them), and the returned wrapper records
every connect, accept, send, recv and close as it happens. Code a student
writes in ``lab/`` therefore produces the same events as the reference
solution without knowing the tracer exists.

When tracing is off, :func:`connected` and :func:`listening` return the
socket untouched, so an untraced program pays nothing per byte.

Several processes may append to one log at once (server and client both
writing ``session.log``). Each event is a single ``os.write`` of one whole
line on a descriptor opened with ``O_APPEND``, so the kernel positions every
write at the current end of file and lines never interleave.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from .linetap import FOLD_LIMIT, ErrorBudget, Fold, LineTap, text_of

FORMAT = "ftpkit-trace"
SCHEMA_VERSION = 1

# Data-channel sendfile is traced in blocks of this size, so that a large
# file shows up as a series of sends with offsets rather than one huge event.
SENDFILE_BLOCK = 4 * 1024 * 1024
# Consecutive recvs on a data connection are logged as one event once they
# add up to this much (or at end of stream, a send, or close).
RECV_BATCH = 1024 * 1024
# No event line is longer than this: texts are cut (trace.linetap.MAX_TEXT)
# well below it, and the reader refuses longer lines as not the tracer's.
MAX_LINE_BYTES = 4 * 1024 * 1024

_current: "Tracer | None" = None


class Tracer:
    """Append-only writer of one process's trace events."""

    def __init__(self, path: str | os.PathLike, role: str):
        self.path = os.fspath(path)
        self.role = role
        self.pid = os.getpid()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        self._fd = os.open(self.path, flags, 0o644)
        # The lock keeps sequence numbers in file order when several threads
        # of this process emit at once; other processes append independently.
        self._lock = threading.Lock()
        self._seq = 0
        self._next_conn = 0
        # What error events (floods of junk lines) may still cost: see trace.linetap.
        self.error_budget = ErrorBudget()
        self.emit(
            "header",
            format=FORMAT,
            schema=SCHEMA_VERSION,
            host=socket.gethostname(),
            start=round(time.time(), 6),
        )

    def new_connection_id(self) -> int:
        with self._lock:
            self._next_conn += 1
            return self._next_conn

    def emit(self, type: str, t: float | None = None, **fields) -> None:
        """Write one event; ``t`` defaults to now."""
        with self._lock:
            record = {
                "type": type,
                "t": round(time.time() if t is None else t, 6),
                "seq": self._seq,
                "role": self.role,
                "pid": self.pid,
            }
            record.update(fields)
            self._seq += 1
            line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
            os.write(self._fd, line.encode("utf-8"))

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


# --- the process-wide tracer -------------------------------------------------

def start(path: str | os.PathLike, role: str) -> Tracer:
    """Start tracing this process's sockets to ``path`` (appending)."""
    global _current
    stop()
    _current = Tracer(path, role)
    return _current


def stop() -> None:
    global _current
    if _current is not None:
        _current.close()
        _current = None


def current() -> Tracer | None:
    return _current


def event(type: str, **fields) -> None:
    """Emit a protocol-level event (transfer_start, transfer_end, error)."""
    if _current is not None:
        _current.emit(type, **fields)


def transfer_end(command: str, path: str, direction: str, *, moved: int, verdict: str,
                 started: float | None = None, duration: float | None = None,
                 data=None, control=None, sha256: str | None = None) -> None:
    """Record the end of a transfer: the one way server and client write it.

    Give ``started`` (the ``time.monotonic()`` of its start) or the
    ``duration`` in seconds. ``data`` and ``control`` name the connections
    it used: a traced socket, its connection id, or None. ``verdict`` is one
    of ok, verified, mismatch, unverified or aborted.
    """
    if _current is None:
        return
    if duration is None:
        duration = time.monotonic() - started if started is not None else 0.0
    _current.emit("transfer_end", command=command, path=path, direction=direction,
                  conn=_connection_id(data), control=_connection_id(control), bytes=moved,
                  duration=round(duration, 6), sha256=sha256, verdict=verdict)


def _connection_id(end) -> int | None:
    return end if isinstance(end, int) or end is None else getattr(end, "conn", None)


def connected(sock: socket.socket, channel: str, tracer: Tracer | None = None):
    """Announce a socket that has just connected; returns what to use instead."""
    tracer = tracer or _current
    if tracer is None:
        return sock
    traced = TracedSocket(sock, channel, tracer)
    tracer.emit("connect", **traced.identity())
    return traced


def listening(sock: socket.socket, channel: str, tracer: Tracer | None = None):
    """Announce a socket that is now listening; its accepts are traced too."""
    tracer = tracer or _current
    if tracer is None:
        return sock
    traced = TracedSocket(sock, channel, tracer)
    tracer.emit("listen", conn=traced.conn, channel=channel, local=_address(sock.getsockname()))
    return traced


def _address(addr) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- the traced socket -------------------------------------------------------

class TracedSocket:
    """A socket wrapper that records what passes through it.

    Only the calls that move bytes or change the connection's state are
    intercepted; everything else (settimeout, getsockname, fileno, ...) goes
    straight to the real socket.
    """

    def __init__(self, sock: socket.socket, channel: str, tracer: Tracer):
        self._sock = sock
        self.channel = channel
        self.tracer = tracer
        self.conn = tracer.new_connection_id()
        self.sent = 0        # stream offset of the next byte we send
        self.received = 0    # stream offset of the next byte we receive
        self._unlogged_recv = 0      # data received but not yet logged (see _record_recv)
        self._closed = False
        try:
            self._local = _address(sock.getsockname())
        except OSError:
            self._local = None
        try:
            self._remote = _address(sock.getpeername())
        except OSError:
            self._remote = None
        # On the control channel the wrapper also reads the lines as they
        # pass, so commands and replies appear in the trace by themselves.
        if channel == "control":
            self._lines = {"out": LineTap(self, "out", tracer.error_budget),
                           "in": LineTap(self, "in", tracer.error_budget)}
            # Raw sends and recvs that carried only error lines, during a flood.
            self._raw_folds: dict[str, Fold | None] = {"out": None, "in": None}

    def identity(self) -> dict:
        return {"conn": self.conn, "channel": self.channel,
                "local": self._local, "remote": self._remote}

    # -- delegation -----------------------------------------------------------
    def __getattr__(self, name):
        return getattr(self._sock, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- connection state -----------------------------------------------------
    def accept(self):
        sock, addr = self._sock.accept()
        traced = TracedSocket(sock, self.channel, self.tracer)
        self.tracer.emit("accept", listener=self.conn, **traced.identity())
        return traced, addr

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._log_unlogged_recv()
            if self.channel == "control" and self._remote is not None:
                for direction in ("out", "in"):
                    self._flush_folds(direction)
            if self._remote is None:       # a listener: nothing was carried
                self.tracer.emit("close", conn=self.conn, channel=self.channel,
                                 local=self._local, remote=None)
            else:
                self.tracer.emit("close", sent=self.sent, received=self.received,
                                 **self.identity())
        self._sock.close()

    # -- bytes out ------------------------------------------------------------
    # A send is stamped with the time it started, when the bytes were handed
    # to the kernel, so it sorts before the peer's recv of the same bytes.
    def send(self, data, *flags) -> int:
        started = time.time()
        n = self._sock.send(data, *flags)
        self._record_send(data, n, started)
        return n

    def sendall(self, data, *flags) -> None:
        started = time.time()
        self._sock.sendall(data, *flags)
        self._record_send(data, len(data), started)

    def sendfile(self, file, offset: int = 0, count: int | None = None) -> int:
        total = 0
        while count is None or total < count:
            block = SENDFILE_BLOCK if count is None else min(SENDFILE_BLOCK, count - total)
            started = time.time()
            n = self._sock.sendfile(file, offset + total, block)
            if n == 0:
                break
            self._record_send(None, n, started)
            total += n
        return total

    def _record_send(self, data, n: int, started: float) -> None:
        self._log_unlogged_recv()
        control = self.channel == "control" and data is not None
        raw = bytes(data[:n]) if control else None
        if not (control and self._folded_raw("out", raw, self.sent, started)):
            fields = dict(self.identity(), dir="out", offset=self.sent, len=n)
            if control:
                fields["text"] = text_of(raw)
            self.tracer.emit("send", t=started, **fields)
        self.sent += n
        if control:
            self._lines["out"].feed(raw, self.sent - n, started)

    # -- bytes in -------------------------------------------------------------
    def recv(self, bufsize: int, *flags) -> bytes:
        data = self._sock.recv(bufsize, *flags)
        self._record_recv(data, len(data))
        return data

    def recv_into(self, buffer, nbytes: int = 0, *flags) -> int:
        n = self._sock.recv_into(buffer, nbytes, *flags)
        data = bytes(memoryview(buffer)[:n]) if self.channel == "control" else None
        self._record_recv(data, n)
        return n

    def _record_recv(self, data, n: int) -> None:
        if self.channel == "data" and n > 0:
            # A download arrives in many reads (often 64 KiB each); logging
            # each would cost more than the read. Consecutive reads are logged
            # as one event over their byte range, up to RECV_BATCH bytes.
            if not self._unlogged_recv:
                self._unlogged_recv_t, self._unlogged_recv_offset = time.time(), self.received
            self._unlogged_recv += n
            self.received += n
            self.tracer.error_budget.received(n)
            if self._unlogged_recv >= RECV_BATCH:
                self._log_unlogged_recv()
            return
        self._log_unlogged_recv()
        self.tracer.error_budget.received(n)
        control = self.channel == "control" and data is not None
        # A recv of zero bytes is the peer's FIN: it is recorded too, because
        # "recv returned nothing" is how a program learns a transfer ended.
        if not (control and data and self._folded_raw("in", data, self.received, None)):
            fields = dict(self.identity(), dir="in", offset=self.received, len=n)
            if control:
                fields["text"] = text_of(data)
            self.tracer.emit("recv", **fields)
        self.received += n
        if control and data:
            self._lines["in"].feed(data, self.received - n)

    def _folded_raw(self, direction: str, data: bytes, offset: int, t: float | None) -> bool:
        """During a flood of error lines, fold a send or recv that carried only
        such lines (see trace.linetap); False: log it as usual."""
        if not self._lines[direction].only_error_lines(data):
            self._flush_raw_fold(direction)
            return False
        t = time.time() if t is None else t
        fold = self._raw_folds[direction]
        if fold is not None and fold.count < FOLD_LIMIT:
            fold.add(offset, len(data), t)
            return True
        self._flush_raw_fold(direction)
        if fold is None and self.tracer.error_budget.take():
            return False
        kind = "send" if direction == "out" else "recv"
        self._raw_folds[direction] = Fold(kind, {}, offset, len(data), t)
        return True

    def _flush_raw_fold(self, direction: str) -> None:
        fold, self._raw_folds[direction] = self._raw_folds[direction], None
        if fold is not None:
            fold.emit(self.tracer, dict(self.identity(), dir=direction))

    def _flush_folds(self, direction: str) -> None:
        self._flush_raw_fold(direction)
        self._lines[direction].flush()

    def _log_unlogged_recv(self) -> None:
        if self._unlogged_recv:
            self.tracer.emit("recv", t=self._unlogged_recv_t, **self.identity(), dir="in",
                             offset=self._unlogged_recv_offset, len=self._unlogged_recv)
            self._unlogged_recv = 0
