# ftpkit lab: starter code generated from the reference solution by
# `python -m solutions.generate`. Replace each `raise NotImplementedError(...)`
# with your code; lab/README.md says what each exercise asks for.
"""The client's side of the protocol: commands out, replies in, files moved.

This module has no user interface; ``client.py`` puts a shell on top of it.
Every transfer follows the same steps, which is the lesson of the whole
design:

1. agree on a data connection over the control channel (PASV/EPSV or PORT/EPRT);
2. send the transfer command (RETR, STOR, LIST, NLST);
3. open the data connection, move the bytes, close it;
4. read the final reply (226) on the control channel, which stayed open.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import trace

from . import helper
from .datachannel import ConnectingEnd, ListeningEnd
from .protocol import (ConnectionClosed, Reply, format_eprt_arg, format_host_port,
                       parse_epsv_reply, parse_hash_reply, parse_pasv_reply, ReplyParser)


class FtpError(Exception):
    """The server answered with an error reply (4xx or 5xx)."""

    def __init__(self, reply: Reply):
        super().__init__(str(reply))
        self.reply = reply


class ConnectionLost(Exception):
    """The control connection closed or broke; the session is over."""


@dataclass
class TransferResult:
    command: str
    path: str
    direction: str                   # "download", "upload" or "listing"
    bytes: int
    seconds: float
    replies: list[Reply]
    data_conn: int | None = None     # the data connection's trace id, if traced

    @property
    def rate(self) -> float:
        """Bytes per second."""
        return self.bytes / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class Verdict:
    """What the integrity check after a transfer found."""
    method: str            # "HASH", "SIZE" or "none"
    ok: bool | None        # None: could not check
    local: str
    remote: str

    @property
    def name(self) -> str:
        return {True: "verified", False: "mismatch", None: "unverified"}[self.ok]


class FtpClient:
    def __init__(self, host: str, port: int, passive: bool = True, timeout: float = 30.0,
                 on_reply: Callable[[Reply], None] | None = None):
        self.host, self.port = host, port
        self.passive = passive
        self.timeout = timeout
        self.on_reply = on_reply or (lambda reply: None)
        self.control = None
        self.parser = ReplyParser()
        self.features: set[str] = set()

    # --- the control channel ---------------------------------------------------

    def connect(self) -> Reply:
        self.control = helper.connect((self.host, self.port), "control", timeout=self.timeout)
        welcome = self.read_reply()
        if welcome.is_error:
            raise FtpError(welcome)
        return welcome

    def read_reply(self) -> Reply:
        try:
            event = helper.receive_event(self.control, self.parser)
        except TimeoutError:
            raise ConnectionLost("the server did not answer in time") from None
        except OSError as err:
            raise ConnectionLost(f"control connection broken: {err.strerror or err}") from None
        if isinstance(event, ConnectionClosed):
            raise ConnectionLost("the server closed the control connection")
        if not isinstance(event, Reply):
            raise ConnectionLost(f"the server sent something that is not a reply: {event}")
        self.on_reply(event)
        if event.code == 421:
            # 421 means the server is closing the connection (RFC 959 4.2).
            raise ConnectionLost(str(event))
        return event

    def command(self, verb: str, arg: str = "") -> Reply:
        """Send a command and return its reply, whatever it is."""
        try:
            helper.send_command(self.control, verb, arg)
        except OSError as err:
            raise ConnectionLost(f"control connection broken: {err.strerror or err}") from None
        return self.read_reply()

    def expect(self, verb: str, arg: str = "", *, kind: int = 2) -> Reply:
        """Send a command; raise FtpError unless the reply starts with ``kind``."""
        reply = self.command(verb, arg)
        if reply.kind != kind:
            raise FtpError(reply)
        return reply

    def login(self, user: str = "anonymous", password: str = "anonymous@") -> None:
        reply = self.command("USER", user)
        if reply.code == 331:
            reply = self.command("PASS", password)
        if reply.kind != 2:
            raise FtpError(reply)
        reply = self.command("FEAT")
        if reply.code == 211:
            # The lines between "211-Features:" and "211 End", one per feature.
            self.features = {line.strip().split(" ")[0].upper() for line in reply.text.split("\n")[1:-1]}
        self.expect("TYPE", "I")

    def quit(self) -> None:
        try:
            self.command("QUIT")
        finally:
            self.close()

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None

    # --- data connections --------------------------------------------------------

    def prepare_data_channel(self):
        """Agree on the next data connection; returns the end this side will open.

        IPv4 uses the classic PASV and PORT (their replies show the address
        as six numbers); IPv6 needs the extended EPSV and EPRT of RFC 2428.
        """
        local_host = self.control.getsockname()[0]
        ipv6 = ":" in local_host
        if self.passive:
            raise NotImplementedError('ex2: PASV (or EPSV for IPv6); connect to the announced address')
        raise NotImplementedError("ex6: listen on the control connection's local address; announce it with PORT/EPRT")

    def transfer(self, verb: str, arg: str, move_bytes: Callable, direction: str) -> TransferResult:
        """Run one transfer command with its own data connection (steps 1-4 above)."""
        replies = []
        data_end = self.prepare_data_channel()
        started = time.monotonic()
        trace.event("transfer_start", command=verb, path=arg or ".", direction=direction,
                    control=getattr(self.control, "conn", None))
        data = None
        moved = 0
        try:
            raise NotImplementedError('ex3: passive: connect first; send the command, expect 1xx; active: accept; move bytes; close; expect 226')
        except BaseException as failure:
            trace.event("transfer_end", command=verb, path=arg or ".", direction=direction,
                        conn=getattr(data, "conn", None), control=getattr(self.control, "conn", None),
                        bytes=moved, duration=round(time.monotonic() - started, 6), sha256=None,
                        verdict="aborted")
            if isinstance(failure, Exception) and not isinstance(failure, ConnectionLost):
                self._collect_final_reply(verb, replies, data, failure)
            raise
        finally:
            data_end.close()
            if data is not None:
                data.close()
        return TransferResult(verb, arg, direction, moved, time.monotonic() - started, replies,
                              getattr(data, "conn", None))

    def record_end(self, result: TransferResult, verdict: str, sha256: str | None = None) -> None:
        """Put a finished transfer in the trace, with the verdict of its check
        (a listing is not checked: "ok")."""
        trace.event("transfer_end", command=result.command, path=result.path or ".",
                    direction=result.direction, conn=result.data_conn,
                    control=getattr(self.control, "conn", None), bytes=result.bytes,
                    duration=round(result.seconds, 6), sha256=sha256, verdict=verdict)

    def _collect_final_reply(self, verb: str, replies: list[Reply], data, failure: Exception) -> None:
        """After this side's end of a transfer failed (a reset, a full disk),
        read the server's final reply to it, so the control channel stays in
        step: otherwise the next command would be answered by this stale
        426 and every reply after it would be one behind.

        Closing the data connection first tells the server to stop sending.
        """
        if not replies or replies[-1].kind != 1:
            return                  # no transfer under way: no reply pending
        if data is not None:
            data.close()
        try:
            reply = self.read_reply()
        except ConnectionLost as lost:
            raise ConnectionLost(f"{lost} ({verb} failed: {failure})") from failure
        replies.append(reply)
        if reply.is_error:
            # The server's word (426, 451, 452...) explains the failure better
            # than our socket error does: report that.
            raise FtpError(reply) from failure

    # --- the user's commands -------------------------------------------------------

    def get(self, remote: str, local: str, progress=None) -> TransferResult:
        """Download ``remote`` into ``local``.

        The end of the data connection may be the server finishing, or the
        server dying: only the 226 that follows tells them apart. So the file
        keeps its temporary name until transfer() has seen the 226.
        """
        with helper.PartialFile(local) as partial:
            result = self.transfer("RETR", remote,
                                   lambda data: helper.receive_into(data, partial.file, progress),
                                   "download")
            partial.commit()
        return result

    def put(self, local: str, remote: str, progress=None) -> TransferResult:
        """Upload ``local`` as ``remote``, announcing its size first (ALLO) so
        the server can tell a complete upload from a broken one."""
        self.command("ALLO", str(os.path.getsize(local)))
        return self.transfer("STOR", remote,
                             lambda data: helper.send_file(data, local, progress), "upload")

    def listing(self, path: str = "", names_only: bool = False) -> str:
        chunks = []

        def collect(data):
            chunks.append(helper.receive_all(data))
            return len(chunks[0])

        result = self.transfer("NLST" if names_only else "LIST", path, collect, "listing")
        self.record_end(result, "ok")
        return chunks[0].decode("utf-8", "replace")

    def size(self, path: str) -> int:
        return int(self.expect("SIZE", path).text.strip())

    def remote_sha256(self, path: str) -> str:
        algorithm, start, end, digest = parse_hash_reply(self.expect("HASH", path).text)
        if algorithm.upper() != "SHA-256" or start != 0:
            raise ValueError(f"unexpected HASH reply for {path}")
        return digest

    def verify(self, local: str, remote: str) -> Verdict:
        """Compare a local file with the server's copy: by SHA-256 if the server
        offers HASH, else by size only (which catches truncation, not corruption)."""
        raise NotImplementedError('ex4: HASH if in self.features (compare hex digests), else SIZE, else unverified')
