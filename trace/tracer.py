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

FORMAT = "ftpkit-trace"
SCHEMA_VERSION = 1

# Data-channel sendfile is traced in blocks of this size, so that a large
# file shows up as a series of sends with offsets rather than one huge event.
SENDFILE_BLOCK = 4 * 1024 * 1024
# Consecutive recvs on a data connection are logged as one event once they
# add up to this much (or at end of stream, a send, or close).
RECV_BATCH = 1024 * 1024

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
            self._lines_out = _LineTap(self, "out")
            self._lines_in = _LineTap(self, "in")

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
        fields = dict(self.identity(), dir="out", offset=self.sent, len=n)
        if self.channel == "control" and data is not None:
            fields["text"] = self._lines_out.text_of(bytes(data[:n]))
        self.tracer.emit("send", t=started, **fields)
        self.sent += n
        if self.channel == "control" and data is not None:
            self._lines_out.feed(bytes(data[:n]), self.sent - n, started)

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
            if self._unlogged_recv >= RECV_BATCH:
                self._log_unlogged_recv()
            return
        self._log_unlogged_recv()
        # A recv of zero bytes is the peer's FIN: it is recorded too, because
        # "recv returned nothing" is how a program learns a transfer ended.
        fields = dict(self.identity(), dir="in", offset=self.received, len=n)
        if self.channel == "control" and data is not None:
            fields["text"] = self._lines_in.text_of(data)
        self.tracer.emit("recv", **fields)
        self.received += n
        if self.channel == "control" and data:
            self._lines_in.feed(data, self.received - n)

    def _log_unlogged_recv(self) -> None:
        if self._unlogged_recv:
            self.tracer.emit("recv", t=self._unlogged_recv_t, **self.identity(), dir="in",
                             offset=self._unlogged_recv_offset, len=self._unlogged_recv)
            self._unlogged_recv = 0


class _LineTap:
    """Splits one direction of a control connection into lines for the trace.

    It emits a ``command`` event for each command line and a ``reply`` event
    for each complete (possibly multi-line) reply, with the stream offset of
    the line's first byte. The password of a PASS command is never written.
    """

    def __init__(self, sock: TracedSocket, direction: str):
        self.sock = sock
        self.direction = direction
        self.pending = b""
        self.pending_offset = 0
        self.reply_lines: list[str] = []
        self.reply_offset = 0

    @staticmethod
    def text_of(data: bytes) -> str:
        text = data.decode("utf-8", "replace")
        return _redact(text)

    def feed(self, data: bytes, offset: int, t: float | None = None) -> None:
        if not self.pending:
            self.pending_offset = offset
        self.pending += data
        while True:
            end = self.pending.find(b"\n")
            if end < 0:
                # A line with no end yet: keep at most a little of it, so a
                # hostile peer cannot make the tracer buffer without limit.
                if len(self.pending) > 65536:
                    self.pending = self.pending[-65536:]
                return
            raw, self.pending = self.pending[:end + 1], self.pending[end + 1:]
            line_offset = self.pending_offset
            self.pending_offset += len(raw)
            self._line(raw.rstrip(b"\r\n").decode("utf-8", "replace"), line_offset, len(raw), t)

    def _line(self, line: str, offset: int, length: int, t: float | None) -> None:
        base = dict(self.sock.identity(), dir=self.direction)
        is_reply_line = len(line) >= 3 and line[:3].isdigit() and (len(line) == 3 or line[3] in " -")
        if self.reply_lines or is_reply_line:
            if not self.reply_lines:
                self.reply_offset = offset
            self.reply_lines.append(line)
            first = self.reply_lines[0]
            # A reply ends on a line that starts with its code and a space
            # (RFC 959 section 4.2); "123-" opens a multi-line reply.
            if is_reply_line and line[:3] == first[:3] and (len(line) == 3 or line[3] == " ") \
                    and (len(self.reply_lines) > 1 or len(first) == 3 or first[3] == " "):
                text = "\n".join(self.reply_lines)
                self.sock.tracer.emit("reply", t=t, code=int(first[:3]), text=text,
                                      offset=self.reply_offset,
                                      len=offset + length - self.reply_offset, **base)
                self.reply_lines = []
            return
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb == "PASS" and arg:
            arg = "****"
        self.sock.tracer.emit("command", t=t, verb=verb, arg=arg,
                              text=f"{verb} {arg}".rstrip(), offset=offset, len=length, **base)


def _redact(text: str) -> str:
    """Hide the argument of PASS wherever it appears in raw control text."""
    if "PASS" not in text.upper():
        return text
    out = []
    for line in text.split("\n"):
        head = line[:5].upper()
        if head == "PASS ":
            line = line[:5] + "****" + ("\r" if line.endswith("\r") else "")
        out.append(line)
    return "\n".join(out)
