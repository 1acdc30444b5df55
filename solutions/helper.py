"""Send and receive logic shared by the server and the client.

This is the original course design's ``helper.py``: the few socket
operations both sides need. Every socket is created here, and each is
handed to the tracer as it is created (``trace.connected`` /
``trace.listening``), so whatever the programs do with it afterwards shows
up in the trace without them asking. When tracing is off those calls return
the socket unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import socket
import stat
from typing import Callable

import trace

from .protocol import NEED_DATA, format_command, format_reply

# How much one recv asks for. Large reads mean fewer system calls per
# megabyte; 256 KiB is past the point where a bigger buffer stops helping.
BUFFER_SIZE = 256 * 1024

# ...except when a file arrives on a data connection and the socket is
# traced: each recv is one event in the trace, so reading up to 1 MiB at a
# time makes tracing cheaper (and a 256 MiB upload a few hundred lines in
# the trace rather than a thousand).
RECEIVE_BUFFER_SIZE = 1024 * 1024

# How much one recv on the control channel asks for: room for a few lines.
# Not more: CPython allocates the whole size for every recv (and then
# shrinks it), and a large block costs a round trip to the operating system
# (mmap, munmap) for every 20-byte command.
CONTROL_READ_SIZE = 16 * 1024

# When a progress callback wants updates, sendfile goes in blocks this big.
PROGRESS_BLOCK = 1024 * 1024

Progress = Callable[[int], None]


# --- opening connections -----------------------------------------------------

def listen(host: str, port: int, channel: str, backlog: int = 64):
    """A socket listening on (host, port); port 0 lets the OS choose."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if channel == "control" and os.name != "nt":
        # Let a restarted server reuse its port at once instead of waiting out
        # TIME_WAIT. (On Windows this option means something else: skip it.)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return trace.listening(sock, channel)


def connect(address: tuple[str, int], channel: str, timeout: float | None = 30,
            source: tuple[str, int] | None = None):
    """A connected TCP socket to ``address``, from ``source`` if given."""
    if source is None:
        sock = socket.create_connection(address, timeout=timeout)
    else:
        sock = _connect_from(source, address, timeout)
    no_delay(sock)
    return trace.connected(sock, channel)


def _connect_from(source: tuple[str, int], address: tuple[str, int], timeout: float | None):
    """Connect from a chosen local port, or from any port if that one is unusable.

    SO_REUSEADDR lets several data connections leave from the same port (to
    different peers) and lets a port in TIME_WAIT be used again. When the
    port is still taken, or the same four addresses are still in TIME_WAIT
    from the last transfer, or the port is privileged (below 1024) and we
    are not root, the connection goes out from an ephemeral port instead:
    a fixed source port is a nicety, never a reason to fail.
    """
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    for port in (source[1], 0):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.settimeout(timeout)
            sock.bind((source[0], port))
            sock.connect(address)
            return sock
        except OSError as err:
            sock.close()
            if port == 0 or err.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                raise
    raise AssertionError("unreachable")


def accept(listener, timeout: float | None):
    """Wait up to ``timeout`` seconds for one connection on ``listener``."""
    listener.settimeout(timeout)
    sock, _ = listener.accept()
    sock.settimeout(timeout)
    no_delay(sock)
    return sock


def no_delay(sock) -> None:
    """Turn off Nagle's algorithm on a connection.

    Nagle holds back a small write while an earlier one is unacknowledged,
    and the peer delays its ACK for up to 40 ms hoping to piggyback it on
    data. A server that sends "150" and then "226" with nothing in between
    from the client hits exactly that: every transfer would end 40 ms late.
    Our writes are whole lines or whole files, so there is nothing to gain
    from Nagle's batching.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --- the control channel -----------------------------------------------------

def send_command(sock, verb: str, arg: str = "") -> None:
    """Send one command line, e.g. ``RETR a.bin`` + CRLF."""
    sock.sendall(format_command(verb, arg))


def send_reply(sock, code: int, text: str) -> None:
    """Send one reply, single- or multi-line."""
    ### BEGIN SOLUTION ex1: format the reply and send all of it
    sock.sendall(format_reply(code, text))
    ### END SOLUTION


def receive_event(sock, parser):
    """Read from ``sock`` until the sans-IO ``parser`` has an event, and return it.

    This is the whole of "read a line from a stream socket": the parser
    knows where lines end, and this loop only fetches more bytes when the
    parser says it needs them. A recv of b"" (the peer closed) is passed on
    too, and the parser turns it into ConnectionClosed.
    """
    ### BEGIN SOLUTION ex1: loop: ask parser.next_event(); on NEED_DATA recv more and feed it
    while True:
        event = parser.next_event()
        if event is not NEED_DATA:
            return event
        parser.receive_data(sock.recv(CONTROL_READ_SIZE))
    ### END SOLUTION


# --- the data channel --------------------------------------------------------

def send_file(sock, path: str | os.PathLike, progress: Progress | None = None) -> int:
    """Send a whole file over a data connection; returns the bytes sent.

    ``socket.sendfile`` asks the kernel to copy straight from the file to
    the socket (no trip through Python), and falls back to plain sends on
    platforms without ``os.sendfile``.
    """
    with open(path, "rb") as file:
        ### BEGIN SOLUTION ex3: sock.sendfile(file); with a progress callback, in blocks
        if progress is None:
            return sock.sendfile(file)
        sent = 0
        while True:
            n = sock.sendfile(file, sent, PROGRESS_BLOCK)
            if n == 0:
                return sent
            sent += n
            progress(n)
        ### END SOLUTION


def send_bytes(sock, data: bytes) -> int:
    """Send a small payload (a directory listing) over a data connection."""
    sock.sendall(data)
    return len(data)


def receive_all(sock) -> bytes:
    """Read a data connection until the sender closes it (a listing)."""
    chunks = []
    while True:
        chunk = sock.recv(BUFFER_SIZE)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class PartialFile:
    """A file written under a hidden temporary name, given its real name only
    by :meth:`commit`.

    Whoever receives a file decides when it is complete: the server when the
    data connection closed cleanly, the client only once the server's 226
    confirms it. Until then the bytes live in ``.name.XXXX.part`` in the same
    directory (so the final rename stays on one file system and is atomic),
    and leaving the ``with`` block without committing deletes them. A broken
    transfer therefore never leaves a truncated file under the real name, and
    an older file of that name stays intact.

    Only a regular file is ever renamed over. A device or FIFO that exists
    already (``/dev/null``, a terminal, a pipe) is written straight through:
    renaming over it would replace a device with a plain file, which as root
    breaks the machine. A symbolic link to a regular file keeps its link:
    the file it points to is replaced. Anything else (a folder, a socket, a
    link to nowhere) is refused with an OSError that names the path.
    """

    def __init__(self, path: str | os.PathLike):
        target = self._target(path)
        self.committed = False
        if target is None:
            # A device or FIFO: nothing to rename, nothing to delete after.
            self.path, self.partial = os.path.abspath(path), None
            self.file = open(self.path, "wb", buffering=0)
            return
        self.path = target
        directory, name = os.path.split(self.path)
        self.partial = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.part")
        # Mode 0o666 lets the umask decide the permissions, as for any new file.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        self.file = os.fdopen(os.open(self.partial, flags, 0o666), "wb")

    @staticmethod
    def _target(path: str | os.PathLike) -> str | None:
        """The regular file to (re)place for ``path``, or None to write ``path``
        directly (a device or FIFO); OSError for anything else."""
        real = os.path.realpath(path)          # through symbolic links
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError:
            if os.path.islink(path):
                raise OSError(errno.ENOENT, "is a symbolic link to nowhere", str(path)) from None
            return real                        # a new file
        if stat.S_ISREG(mode):
            return real
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            return None
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        raise OSError(errno.EINVAL, "is neither a file nor a device", str(path))

    @property
    def written(self) -> str:
        """The path the bytes are being written to right now."""
        return self.partial if self.partial is not None else self.path

    def discard_as(self, path: str) -> None:
        """Keep the bytes, but under ``path`` instead of the real name (a
        download whose check failed); a device keeps what it was given."""
        self.file.close()
        if self.partial is not None:
            os.replace(self.partial, path)
        self.committed = True

    def commit(self) -> None:
        self.file.close()
        if self.partial is not None:
            os.replace(self.partial, self.path)
        self.committed = True

    def __enter__(self) -> "PartialFile":
        return self

    def __exit__(self, *exc) -> None:
        if not self.committed:
            self.file.close()
            if self.partial is not None:
                os.unlink(self.partial)


def receive_file(sock, path: str | os.PathLike, progress: Progress | None = None,
                 expected_size: int | None = None,
                 still_wanted: Callable[[], bool] | None = None) -> int:
    """Receive until the sender closes, into ``path``; returns the bytes received.

    The file gets its real name only if the sender closed cleanly, the size
    matches the announced one (if any) and ``still_wanted()`` (if given)
    agrees; otherwise it is discarded (see PartialFile).
    """
    with PartialFile(path) as partial:
        received = receive_into(sock, partial.file, progress)
        if expected_size is not None and received != expected_size:
            raise IncompleteTransfer(received, expected_size)
        if still_wanted is not None and not still_wanted():
            raise IncompleteTransfer(received, None)
        partial.commit()
    return received


def receive_into(sock, file, progress: Progress | None = None) -> int:
    """Copy a data connection into an open file until the sender closes it."""
    try:
        return _copy_until_eof(sock, file, progress)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise StorageFull() from err
        raise


def _copy_until_eof(sock, file, progress: Progress | None) -> int:
    # One buffer reused for every read: recv_into fills it in place, so a
    # large download allocates nothing per chunk.
    buffer = bytearray(RECEIVE_BUFFER_SIZE)
    view = memoryview(buffer)
    received = 0
    ### BEGIN SOLUTION ex3: recv_into the buffer until it returns 0, writing what arrived
    while True:
        n = sock.recv_into(buffer)
        if n == 0:
            return received
        file.write(view[:n])
        received += n
        if progress is not None:
            progress(n)
    ### END SOLUTION


class IncompleteTransfer(OSError):
    """The data connection closed before the whole file arrived."""

    def __init__(self, received: int, expected: int | None):
        if expected is None:
            message = f"the sender went away after {received} bytes"
        else:
            message = f"received {received} bytes, expected {expected}"
        super().__init__(message)
        self.received, self.expected = received, expected


class StorageFull(OSError):
    """The disk filled up while receiving (ENOSPC); the partial file was removed."""

    def __init__(self):
        super().__init__(errno.ENOSPC, "no space left on device")


# --- integrity ---------------------------------------------------------------

def file_sha256(path: str | os.PathLike, start: int = 0, end: int | None = None) -> str:
    """SHA-256 of bytes [start, end) of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        file.seek(start)
        remaining = None if end is None else max(0, end - start)
        ### BEGIN SOLUTION ex4: read in blocks, update the digest, stop at end
        while remaining is None or remaining > 0:
            block = file.read(BUFFER_SIZE if remaining is None else min(BUFFER_SIZE, remaining))
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
        ### END SOLUTION
    return digest.hexdigest()
