# ftpkit lab: starter code generated from the reference solution by
# `python -m solutions.generate`. Replace each `raise NotImplementedError(...)`
# with your code; lab/README.md says what each exercise asks for.
"""Fault injection on the data channel, for experiments and tests.

TCP hides almost every fault of the network below it: lost, reordered and
damaged segments are resent until the receiver has the right bytes, so an
application sees either the right bytes or a broken connection. To watch
what the layers *above* TCP do when something goes wrong anyway, the server
can be told to damage its own data connections::

    python -m lab.server --fault-flip-every 100000 2121   # corrupt
    python -m lab.server --fault-delay 0.05 2121          # slow
    python -m lab.server --fault-drop-after 1000000 2121  # break

* ``flip_every=N``: invert every N-th byte of each data connection, as a
  faulty network card or a buggy middlebox might. TCP's checksum never sees
  it (the damage happens above TCP), so only an end-to-end check such as the
  client's HASH comparison notices.
* ``delay=S``: sleep S seconds before each chunk of at most CHUNK bytes, a
  slow link. Transfers take longer; nothing else changes.
* ``drop_after=N``: reset each data connection once N bytes have crossed
  it, a link that fails mid-transfer. Both sides must notice, report it
  (426) and keep no half-written file.

The faults apply to both directions (downloads, uploads and listings) and
count bytes per data connection. Nothing here is used unless one of the
options is given: an undamaged transfer goes through the normal path.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from dataclasses import dataclass

# The unit of work while faults are on: a delay is taken, and the drop point
# checked, once per chunk. Small enough that delays are smooth, big enough
# that a damaged transfer still moves megabytes per second.
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Faults:
    """Which faults to inject; the default injects none."""
    flip_every: int | None = None
    delay: float = 0.0
    drop_after: int | None = None

    def __post_init__(self):
        if self.flip_every is not None and self.flip_every < 1:
            raise ValueError("flip_every must be at least 1")
        if self.delay < 0:
            raise ValueError("delay cannot be negative")
        if self.drop_after is not None and self.drop_after < 0:
            raise ValueError("drop_after cannot be negative")

    @property
    def active(self) -> bool:
        return self.flip_every is not None or self.delay > 0 or self.drop_after is not None

    def wrap_end(self, end):
        """A data-channel end (ListeningEnd or ConnectingEnd) whose connections
        carry these faults; the end itself when there are none."""
        return FaultyEnd(end, self) if self.active else end


class FaultyEnd:
    """Wraps a ListeningEnd or ConnectingEnd: the socket ``open()`` returns is damaged."""

    def __init__(self, end, faults: Faults):
        self._end = end
        self.faults = faults

    def open(self):
        return FaultySocket(self._end.open(), self.faults)

    def __getattr__(self, name):
        return getattr(self._end, name)          # address, close, ...


class FaultySocket:
    """A data socket that delays, corrupts or drops what passes through it.

    It offers the calls the helper module makes on a data connection
    (sendfile, sendall, recv_into, recv) and passes everything else to the
    real socket, as the tracer's wrapper does.
    """

    def __init__(self, sock, faults: Faults):
        self._sock = sock
        self.faults = faults
        self.moved = 0          # bytes that have crossed this connection so far

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._sock.close()

    # --- sending -----------------------------------------------------------------

    def sendfile(self, file, offset: int = 0, count: int | None = None) -> int:
        """Like socket.sendfile, but through user space, so the bytes can be damaged."""
        file.seek(offset)
        sent = 0
        while count is None or sent < count:
            block = file.read(CHUNK if count is None else min(CHUNK, count - sent))
            if not block:
                break
            self.sendall(block)
            sent += len(block)
        return sent

    def sendall(self, data) -> None:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), CHUNK):
            chunk = bytearray(view[start:start + CHUNK])
            self._before_chunk()
            allowed = self._room(len(chunk))
            self._corrupt(memoryview(chunk)[:allowed])
            self._sock.sendall(chunk[:allowed])
            self.moved += allowed
            if allowed < len(chunk):
                self._drop()

    def send(self, data) -> int:
        self.sendall(data)
        return len(data)

    # --- receiving -------------------------------------------------------------

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        self._before_chunk()
        wanted = min(nbytes or len(buffer), CHUNK)
        allowed = self._room(wanted)
        if allowed == 0:
            self._drop()
        n = self._sock.recv_into(buffer, allowed, flags)
        self._corrupt(memoryview(buffer)[:n])
        self.moved += n
        return n

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        buffer = bytearray(min(bufsize, CHUNK))
        n = self.recv_into(buffer, len(buffer), flags)
        return bytes(buffer[:n])

    # --- the faults themselves -------------------------------------------------

    def _before_chunk(self) -> None:
        if self.faults.delay:
            time.sleep(self.faults.delay)

    def _room(self, wanted: int) -> int:
        """How many of the next ``wanted`` bytes may pass before the drop point."""
        if self.faults.drop_after is None:
            return wanted
        return max(0, min(wanted, self.faults.drop_after - self.moved))

    def _corrupt(self, chunk: memoryview) -> None:
        """Invert every flip_every-th byte of the stream; ``chunk`` starts at offset self.moved."""
        every = self.faults.flip_every
        if every is None:
            return
        # Stream offsets every-1, 2*every-1, ... are the ones to flip.
        first = (every - 1 - self.moved) % every
        for i in range(first, len(chunk), every):
            chunk[i] ^= 0xFF

    def _drop(self) -> None:
        """Reset the connection (RST, not a clean FIN) and fail as a broken network would."""
        # SO_LINGER with a zero timeout makes close() send RST at once: the
        # peer's next read fails with "connection reset" instead of
        # seeing an end of file that might pass for a complete transfer.
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._sock.close()
        raise ConnectionResetError(errno.ECONNRESET,
                                   f"data connection dropped after {self.moved} bytes (fault injection)")
