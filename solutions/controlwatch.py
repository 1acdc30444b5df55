"""Listening to the control channel while a transfer runs.

During RETR or STOR the session is busy moving bytes on the data
connection, but the client may still speak on the control connection: to
say ABOR (RFC 959 section 4.1.3: stop this transfer), or by closing it
because it died. Either must stop the transfer at once, also when the
session is blocked in a send to a client that stopped reading (ftplib's
``abort()`` sends ABOR and waits for the answer without reading the data).

So for the length of a transfer a second thread watches the control
socket. It reads whatever arrives into the session's own parser, keeps the
events for the session to answer in order once the transfer is over, and
on ABOR or a closed control connection shuts the data connection down,
which makes the blocked send or receive fail at once.
"""

from __future__ import annotations

import select
import socket
import threading

from .helper import CONTROL_READ_SIZE
from .protocol import NEED_DATA, Command, ConnectionClosed


class ControlWatch:
    """``with ControlWatch(control, parser, data) as watch:`` move the bytes;
    afterwards ``watch.events`` holds what the client said meanwhile and
    ``watch.stopped_by`` why the transfer was stopped (None: it was not)."""

    def __init__(self, control, parser, data):
        self.control = control
        self.parser = parser
        self.data = data
        self.events: list = []
        self.stopped_by: str | None = None      # "ABOR" or "the client closed the control connection"
        # A socket pair wakes the thread when the transfer ends: it waits on
        # the control socket and this, so it never needs to poll.
        self._wake, self._woken = socket.socketpair()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="control-watch")

    def start(self) -> "ControlWatch":
        self._thread.start()
        return self

    def __enter__(self) -> "ControlWatch":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop watching (at once, and for good); the control socket is the session's again."""
        if self._thread.is_alive():
            self._wake.send(b"x")
            self._thread.join()
        if self._wake.fileno() >= 0:
            self._wake.close()
            self._woken.close()

    def _watch(self) -> None:
        # poll, not select: select cannot watch descriptors above 1023, and a
        # server with a thousand clients has those.
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        poller.register(self._woken, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._woken.fileno() in ready:
                return
            try:
                received = self.control.recv(CONTROL_READ_SIZE)
            except OSError:
                received = b""                  # reset by the peer: it is gone all the same
            self.parser.receive_data(received)
            while (event := self.parser.next_event()) is not NEED_DATA:
                self.events.append(event)
                if isinstance(event, ConnectionClosed):
                    self._stop("the client closed the control connection")
                    return
                if isinstance(event, Command) and event.verb == "ABOR":
                    self._stop("ABOR")

    def _stop(self, reason: str) -> None:
        if self.stopped_by is None:
            self.stopped_by = reason
            try:
                self.data.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass                            # already closed by the other side
