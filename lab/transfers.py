# ftpkit lab: starter code generated from the reference solution by
# `python -m solutions.generate`. Replace each `raise NotImplementedError(...)`
# with your code; lab/README.md says what each exercise asks for.
"""The data connection and the transfers over it: the server's half of every
RETR, STOR, APPE, LIST, NLST and MLSD.

PASV and EPSV (the server listens) or PORT and EPRT (the server connects)
set up one data connection; the transfer command that follows opens it,
moves the bytes and closes it. ``transfer`` is that shape, once for every
command: 150, the bytes, the close that ends the file, 226. While the bytes
move, the control channel is watched, so ABOR, or the client going away,
stops the transfer (controlwatch.py).
"""

from __future__ import annotations

import ipaddress
import logging
import select
import time
from typing import Callable

import trace

from . import helper
from .controlwatch import ControlWatch
from .datachannel import ConnectingEnd, ListeningEnd
from .filesystem import PathRefused
from .protocol import (Code, UnsupportedFamily, format_epsv_reply, format_pasv_reply, parse_eprt_arg,
                       parse_host_port)
from .resume import receive_after, send_file_from
from .safetext import printable, reason

log = logging.getLogger("ftpkit.server")

# How long the control channel must stay quiet, after an upload without ALLO
# ended, before we believe the client is still there (see
# client_still_connected below). A dying client's kernel closes its two
# connections back to back, so the two FINs arrive microseconds apart; 10 ms
# is a wide margin. Every live client that sends no ALLO (curl, ftplib, most
# GUI clients) waits this long for its 226, so it must stay short.
CLIENT_GONE_GRACE = 0.01
# ...and the longest we listen for that, however chatty the client: a client
# that keeps sending commands is evidently alive.
CLIENT_GONE_LIMIT = 1.0


class TransferAborted(OSError):
    """The client said ABOR, or went away, while the bytes were moving."""


class TransferCommands:
    """Handlers for Session (which provides reply, config, cwd, conversation,
    data_end, close_data_end...)."""

    # --- setting up the data connection ---------------------------------------

    def pasv(self, _: str) -> None:
        host = self.control.getsockname()[0]
        if self.epsv_only or ":" in host:
            self.reply(Code.BAD_SEQUENCE if self.epsv_only else Code.NETWORK_PROTOCOL_NOT_SUPPORTED,
                       "Use EPSV.")
            return
        raise NotImplementedError("ex2: open a listening end on the control connection's address, announce it with 227")

    def epsv(self, arg: str) -> None:
        if arg.upper() == "ALL":
            self.epsv_only = True        # RFC 2428: from now on, only EPSV
            self.reply(Code.OK, "EPSV ALL ok.")
            return
        if arg and arg not in ("1", "2"):
            self.reply(Code.NETWORK_PROTOCOL_NOT_SUPPORTED, "Network protocol not supported, use (1,2)")
            return
        raise NotImplementedError('ex2: like PASV, but announce only the port: 229 (|||port|)')

    def listen_for_data(self) -> None:
        """Open a fresh data listener; the 227/229 reply goes out only after this."""
        self.close_data_end()
        self.data_end = self.config.faults.wrap_end(
            ListeningEnd(self.control.getsockname()[0],
                         self.config.accept_timeout, self.config.transfer_timeout,
                         allowed_peer=self.client_host))

    def port(self, arg: str) -> None:
        raise NotImplementedError('ex6: parse h1,h2,h3,h4,p1,p2; 501 if malformed; then connect_for_data')

    def eprt(self, arg: str) -> None:
        raise NotImplementedError('ex6: parse |family|address|port|; 522 for an unknown family, 501 if malformed')

    def connect_for_data(self, address: tuple[str, int]) -> None:
        verb = self.conversation.verb            # PORT or EPRT: the replies name the one sent
        if self.epsv_only:
            self.reply(Code.BAD_SEQUENCE, "EPSV ALL is in effect: use EPSV.")
            return
        host, port = address
        if ipaddress.ip_address(host).is_unspecified:
            # lftp over IPv6 sends "EPRT |2|::|port|": like vsftpd, read the
            # unspecified address as "my own address", the only one allowed.
            host = self.client_host
        # RFC 2577: connecting anywhere but back to the client, or to a
        # privileged port, would let a client use the server to attack a third
        # host (the "bounce attack").
        if (host != self.client_host and not self.config.port_promiscuous) or port < 1024:
            self.reply(Code.BAD_ARGUMENTS, f"Illegal {verb} command: only to your own address, port 1024 or above.")
            return
        self.close_data_end()
        self.data_end = self.config.faults.wrap_end(
            ConnectingEnd((host, port), self.config.transfer_timeout, source=self.default_data_port()))
        self.reply(Code.OK, f"{verb} command successful. Consider using PASV.")

    def default_data_port(self) -> tuple[str, int]:
        """Where active-mode data connections come from: port 20, ftp-data.

        RFC 959 (3.2) says L-1, one below the control port, which is 20 for
        the standard port 21. Wireshark assumes 20 whatever the control port
        (packet-ftp.c): it links a PORT data connection to its control
        connection only when the server connects from 20. So, like vsftpd's
        connect_from_port_20, always 20. Binding it needs root; when it
        cannot be had (not root, or busy) ConnectingEnd falls back to any
        port (see helper.connect), and SO_REUSEADDR lets several sessions
        connect from 20 to different clients at once.
        """
        host = self.control.getsockname()[0]
        return (host, 20)

    # --- transfers -------------------------------------------------------------

    def retr(self, path: str) -> None:
        target = self.config.root.resolve(self.cwd, path)
        offset, self.restart_at = self.restart_at, 0
        if not target.real.is_file():
            self.close_data_end()
            self.reply(Code.FILE_UNAVAILABLE, f"{path}: no such file.")
            return
        size = target.real.stat().st_size
        if offset > size:
            raise PathRefused(Code.INVALID_RESTART, f"REST {offset} is beyond the end of {path} ({size} bytes).")
        if offset:
            send = lambda data: send_file_from(data, target.real, offset)       # noqa: E731
        else:
            send = lambda data: helper.send_file(data, target.real)             # noqa: E731
        self.transfer("RETR", target.virtual, "download",
                      f"Opening BINARY mode data connection for {path} ({size - offset} bytes).",
                      self.watched(send))

    def stor(self, path: str) -> None:
        offset, self.restart_at = self.restart_at, 0
        self.receive_upload("STOR", path, keep=offset)

    def appe(self, path: str) -> None:
        self.restart_at = 0
        self.receive_upload("APPE", path, keep=None)

    def receive_upload(self, verb: str, path: str, keep: int | None) -> None:
        """STOR (keep the first ``keep`` bytes of the old file: REST), or APPE
        (keep=None: keep all of it). Either way the bytes go to a hidden
        partial copy that replaces the file only once the upload is whole, so
        a broken upload never leaves a truncated file under the real name."""
        target = self.config.root.resolve(self.cwd, path)
        exists = target.real.exists()
        if target.real.is_dir() or not target.real.parent.is_dir() or target.virtual == "/" \
                or (exists and not target.real.is_file()):
            self.close_data_end()
            self.reply(Code.NAME_NOT_ALLOWED, f"{path}: cannot store a file there.")
            return
        old_size = target.real.stat().st_size if exists else 0
        keep = old_size if keep is None else keep
        if keep > old_size:
            raise PathRefused(Code.INVALID_RESTART, f"REST {keep} is beyond the end of {path} ({old_size} bytes).")
        expected, self.announced_size = self.announced_size, None
        still_wanted = self.client_still_connected if expected is None else None
        if keep:
            receive = lambda data: receive_after(data, target.real, keep, expected, still_wanted)  # noqa: E731
        else:
            receive = lambda data: helper.receive_file(                                        # noqa: E731
                data, target.real, expected_size=expected, still_wanted=still_wanted)
        self.transfer(verb, target.virtual, "upload", f"Ok to send data for {path}.", self.watched(receive))

    def watched(self, move_bytes: Callable) -> Callable:
        """``move_bytes`` with the control channel watched while it runs, so an
        ABOR, or the client going away, stops the transfer (controlwatch.py)."""
        def move_watching(data):
            self.watch = ControlWatch(self.control, self.parser, data).start()
            try:
                moved = move_bytes(data)
            except OSError:
                if self.watch.stopped_by:
                    raise TransferAborted(f"stopped: {self.watch.stopped_by}") from None
                raise
            finally:
                watch, self.watch = self.watch, None
                watch.stop()
                self.pending.extend(watch.events)     # answered after this transfer's reply
            if watch.stopped_by:
                raise TransferAborted(f"stopped: {watch.stopped_by}")
            return moved
        return move_watching

    def list_(self, path: str) -> None:
        self.send_listing("LIST", path, names_only=False)

    def nlst(self, path: str) -> None:
        self.send_listing("NLST", path, names_only=True)

    def send_listing(self, verb: str, path: str, names_only: bool) -> None:
        # "ls -l" habits: clients often send options such as "-la"; ignore them.
        path = " ".join(word for word in path.split(" ") if not word.startswith("-"))
        raise NotImplementedError('ex3: build the listing (550 if missing), then send it over a data connection')

    def mlsd(self, path: str) -> None:
        # RFC 3659 section 7: a listing for programs, one line of facts per entry.
        lines = self.config.root.machine_listing(self.cwd, path or ".", not self.config.read_only)
        self.transfer("MLSD", self.config.root.resolve(self.cwd, path or ".").virtual, "listing",
                      "Here comes the machine listing.", lambda data: helper.send_bytes(data, lines))

    def transfer(self, verb: str, path: str, direction: str, opening: str,
                 move_bytes: Callable) -> None:
        """The shape of every transfer: open the data connection, 150, move the
        bytes, close the data connection, 226. A data connection carries one
        file; closing it is what tells the receiver the file has ended."""
        refusal = self.conversation.data_ready()
        if refusal is not None:
            self.reply(refusal.code, refusal.text)
            return
        data_end, self.data_end = self.data_end, None
        started = time.monotonic()
        trace.event("transfer_start", command=verb, path=path, direction=direction,
                    control=getattr(self.control, "conn", None))
        raise NotImplementedError('ex3: open the data connection (425 on failure), 150, move the bytes, close, 226 (426 if broken)')
        self._traced_end(verb, path, direction, data, moved, started, "ok")

    def _traced_end(self, verb, path, direction, data, moved, started, verdict) -> None:
        trace.transfer_end(verb, path, direction, moved=moved, verdict=verdict, started=started,
                           data=data, control=self.control)
        if verdict == "aborted":
            # Whoever runs the server hears of it too: the client may be gone,
            # and with it the only one who saw the 425/426/452.
            log.warning("%s %s for %s aborted", verb, printable(path), self.client_host)

    def client_still_connected(self) -> bool:
        """After an upload's data connection closed: is the client still there?

        In stream mode the close is the only end-of-file mark, so a client
        killed mid-upload looks like one that finished: both send a FIN. What
        differs is the control connection: a dead client's closes too, within
        moments of the data connection. So read the control channel until it
        has been quiet for a moment, or says the client closed. Not just one
        read: a client that sent a NOOP (a keep-alive) just before it died
        has the NOOP there first, and the close only behind it. Whatever
        commands arrive meanwhile are answered later, in order, as usual.
        Clients that announce the size with ALLO (ours does) never need this.
        """
        if self.watch is not None:
            self.watch.stop()                     # from here on, this thread reads the control channel
            if self.watch.stopped_by:
                return False
        deadline = time.monotonic() + CLIENT_GONE_LIMIT
        poller = select.poll()                    # not select(): descriptors above 1023 exist
        poller.register(self.control, select.POLLIN)
        while not self.parser.closed and time.monotonic() < deadline:
            if not poller.poll(CLIENT_GONE_GRACE * 1000):
                return True                       # quiet: a live client waiting for its 226
            try:
                self.parser.receive_data(self.control.recv(helper.CONTROL_READ_SIZE))
            except OSError:
                return False
        return not self.parser.closed

    # --- aborting --------------------------------------------------------------

    def abor(self, _: str) -> None:
        # During a transfer the ControlWatch saw this ABOR, stopped the
        # transfer and had it answered 426; this 226 comes after that.
        # Between transfers there is nothing to stop, but a data connection
        # set up by PASV or PORT is dropped: 225.
        if self.data_end is not None:
            self.reply(Code.NO_TRANSFER, "ABOR: no transfer in progress; data connection closed.")
        else:
            self.reply(Code.TRANSFER_COMPLETE, "ABOR command successful.")
