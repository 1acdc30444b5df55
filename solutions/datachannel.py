"""The two ways to open a data connection, seen from either side.

Every file and every listing travels on a fresh TCP connection. Before each
transfer the two sides agree, on the control channel, which of them listens
and which connects:

* passive mode (PASV / EPSV): the server listens, tells the client its port
  in the reply, and the client connects;
* active mode (PORT / EPRT): the client listens, tells the server its port
  in the command, and the server connects.

So each side needs the same two things: "listen once and accept" and
"connect to an address". Here they are, as two small classes with the same
interface, so the code around them never cares which mode is in use. The
one thing a caller must know, *when* it may call ``open()``, each end says
itself (``waits_for_peer``).
"""

from __future__ import annotations

import time

from . import helper

# How long a listener waits for its one connection before giving up.
ACCEPT_TIMEOUT = 30.0
# How long a data connection may stall (no bytes either way) before it fails.
TRANSFER_TIMEOUT = 60.0
# How many connections may wait to be accepted. Not 1: a stranger who
# floods the port with connects would fill a queue of one, and the real
# peer's connect would be dropped (and retried after 1 s, 3 s, 7 s...).
# With room for many, the kernel completes every handshake and open()
# throws the strangers away one by one until the real peer's turn.
ACCEPT_BACKLOG = 128


def peer_host(sock) -> str | None:
    """The address a connection comes from, or None if the peer is gone
    already: one that connected and reset before we accepted leaves a
    socket whose getpeername() fails (ENOTCONN)."""
    try:
        return sock.getpeername()[0]
    except OSError:
        return None


class ListeningEnd:
    """This side listens on a fresh port and accepts exactly one connection."""

    # open() blocks until the other side connects, and the other side
    # connects only once it has the transfer command: send that first.
    waits_for_peer = True

    def __init__(self, host: str, accept_timeout: float = ACCEPT_TIMEOUT,
                 transfer_timeout: float = TRANSFER_TIMEOUT, allowed_peer: str | None = None):
        # Port 0: the operating system picks a free ephemeral port, and Linux
        # and macOS pick it at random (RFC 6056). A port that came next in
        # line would tell an attacker where to connect first (port stealing).
        self.listener = helper.listen(host, 0, "data", backlog=ACCEPT_BACKLOG)
        self.accept_timeout = accept_timeout
        self.transfer_timeout = transfer_timeout
        # The server accepts its passive connection only from the client's own
        # address, so nobody else can connect first and steal the file
        # ("port stealing", RFC 2577).
        self.allowed_peer = allowed_peer

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) to announce to the other side."""
        host, port = self.listener.getsockname()[:2]
        return host, port

    def open(self):
        """Accept the one connection, then stop listening.

        With ``allowed_peer`` set, a connection from any other address is
        closed and the wait goes on (RFC 2577: no port stealing). The accept
        waits at most ``accept_timeout``; the returned socket has
        ``transfer_timeout`` set."""
        ### BEGIN SOLUTION ex2: accept one connection (close any not from allowed_peer), close the listener, set the transfer timeout
        deadline = time.monotonic() + self.accept_timeout
        try:
            while True:
                sock = helper.accept(self.listener, max(0.001, deadline - time.monotonic()))
                if self.allowed_peer is None or peer_host(sock) == self.allowed_peer:
                    break
                sock.close()        # a stranger: drop it and wait for the real peer
        finally:
            # One listener, one connection: a second connection to this port
            # would otherwise wait in the backlog for an accept that never comes.
            self.close()
        sock.settimeout(self.transfer_timeout)
        return sock
        ### END SOLUTION

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None


class ConnectingEnd:
    """This side connects to the address the other side announced."""

    # The other side listens already: open() may run before or after the
    # transfer command.
    waits_for_peer = False

    def __init__(self, address: tuple[str, int], transfer_timeout: float = TRANSFER_TIMEOUT,
                 source: tuple[str, int] | None = None):
        self.address = address
        self.transfer_timeout = transfer_timeout
        # Where to connect from. A server in active mode connects from port
        # 20, the ftp-data port, which is how Wireshark recognises the
        # connection as FTP data; None lets the operating system choose.
        self.source = source

    def open(self):
        if self.source is not None:
            # From the chosen port if it is free, else from any (see helper.connect).
            return helper.connect(self.address, "data", timeout=self.transfer_timeout, source=self.source)
        ### BEGIN SOLUTION ex2: connect to the announced address
        return helper.connect(self.address, "data", timeout=self.transfer_timeout)
        ### END SOLUTION

    def close(self) -> None:
        """Nothing to release: a connecting end holds no socket until open()."""
