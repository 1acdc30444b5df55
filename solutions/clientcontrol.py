"""The client's control connection: commands out, replies in, one at a time.

FtpClient (ftpclient.py) is built on ControlChannel and adds the data
connections and the transfers. Here is what happens on the control channel
alone: connect and read the greeting, send a command and read its reply
(bounded in size, and understood by the conversation table of
conversation.py), log in, abort a transfer, quit.
"""

from __future__ import annotations

import socket
from typing import Callable

from . import helper
from .conversation import ClientConversation, Outcome, UnexpectedReply
from .protocol import Code, ConnectionClosed, Reply, ReplyParser

# Bounds on one reply. Every line is bounded already (protocol.MAX_LINE);
# these bound how many lines one multi-line reply may have. A FEAT or HELP
# is a few dozen lines; a server that sends more is broken or hostile, and
# buffering its reply would grow the client without limit.
MAX_REPLY_LINES = 10_000
MAX_REPLY_BYTES = 1024 * 1024

# Telnet bytes for an abort (RFC 854, RFC 959 4.1.3): Interrupt Process,
# then the Synch (a Data Mark sent as TCP urgent data), then ABOR.
IAC, IP, DM = 255, 244, 242


class FtpError(Exception):
    """The server answered with an error reply (4xx or 5xx)."""

    def __init__(self, reply: Reply):
        super().__init__(str(reply))
        self.reply = reply


class ConnectionLost(Exception):
    """The control connection closed or broke; the session is over."""


class _MeteredControl:
    """The control socket as the reply reader sees it: it counts what the
    reply being read has cost, and refuses to read past the bounds."""

    def __init__(self, sock):
        self.sock = sock
        self.start_reply()

    def start_reply(self) -> None:
        self.bytes = self.lines = 0

    def recv(self, size: int) -> bytes:
        data = self.sock.recv(size)
        self.bytes += len(data)
        self.lines += data.count(b"\n")
        if self.bytes > MAX_REPLY_BYTES or self.lines > MAX_REPLY_LINES:
            raise ConnectionLost(f"the server's reply is over {MAX_REPLY_LINES} lines or "
                                 f"{MAX_REPLY_BYTES // 1024} KiB; connection closed")
        return data


class ControlChannel:
    """The control connection to one server, and what the client knows of it
    (its features, the replies it still owes)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0,
                 on_reply: Callable[[Reply], None] | None = None):
        self.host, self.port = host, port
        # One timeout for everything that waits on the server: a reply, the
        # data connection's accept or connect, a stalled transfer.
        self.timeout = timeout
        self.on_reply = on_reply or (lambda reply: None)
        self.control = None
        self.parser = ReplyParser()
        self.features: set[str] = set()
        # FEAT's parameters per feature, e.g. {"HASH": "SHA-1*;SHA-256;MD5"}.
        self.feature_params: dict[str, str] = {}
        # Final replies the server still owes us: a command whose reply we
        # never read (Ctrl-C while waiting) must not answer the next one.
        self.unanswered = 0
        # What each reply means (preliminary, final, closing) is looked up in
        # the conversation table, which knows the command it answers.
        self.conversation = ClientConversation()
        self._metered = None

    def connect(self) -> Reply:
        self.control = helper.connect((self.host, self.port), "control", timeout=self.timeout)
        self._metered = _MeteredControl(self.control)
        self.conversation = ClientConversation()        # the greeting comes first
        welcome = self.read_reply()
        if welcome.is_error:
            raise FtpError(welcome)
        return welcome

    def read_reply(self) -> Reply:
        if self._metered is None or self._metered.sock is not self.control:
            self._metered = _MeteredControl(self.control)
        self._metered.start_reply()
        try:
            event = helper.receive_event(self._metered, self.parser)
        except ConnectionLost:
            self.close()            # a reply past the bounds: never read the rest
            raise
        except TimeoutError:
            raise ConnectionLost("the server did not answer in time") from None
        except OSError as err:
            raise ConnectionLost(f"control connection broken: {err.strerror or err}") from None
        if isinstance(event, ConnectionClosed):
            raise ConnectionLost("the server closed the control connection")
        if not isinstance(event, Reply):
            raise ConnectionLost(f"the server sent something that is not a reply: {event}")
        self.on_reply(event)
        outcome = self._meaning(event)
        if outcome is not Outcome.PRELIMINARY and self.unanswered > 0:
            self.unanswered -= 1    # a final reply: one fewer owed (after a 1xx, it still is)
        if outcome is Outcome.CLOSING:
            # 421: the server is closing the connection (RFC 959 4.2).
            raise ConnectionLost(str(event))
        return event

    def _meaning(self, reply: Reply) -> Outcome:
        """What ``reply`` means for the command it answers, by the table."""
        try:
            return self.conversation.received(reply)
        except UnexpectedReply as err:
            # A 150 to NOOP, or a reply to nothing: the server is out of step
            # and no later reply can be trusted to answer its command.
            self.close()
            raise ConnectionLost(f"the server's reply makes no sense here: {err}") from None

    def command(self, verb: str, arg: str = "") -> Reply:
        """Send a command and return its reply, whatever it is."""
        if self.conversation.closed:
            raise ConnectionLost("the server has closed the session (221 or 421)")
        # Counted before sending: once the line is out, a Ctrl-C may come at
        # any moment, and the reply it owes must not be forgotten.
        self.unanswered += 1
        self.conversation.sent(verb)
        try:
            helper.send_command(self.control, verb, arg)
        except OSError as err:
            raise ConnectionLost(f"control connection broken: {err.strerror or err}") from None
        return self.read_reply()

    def catch_up(self) -> None:
        """After Ctrl-C cut a command short, read (and show) the replies the
        server still owes, so that every reply after them answers the
        command it belongs to. Only then: a client that forgot to read a
        reply has a bug, which this must not hide."""
        while self.unanswered > 0:
            self.read_reply()

    def expect(self, verb: str, arg: str = "", *, kind: int = 2) -> Reply:
        """Send a command; raise FtpError unless the reply starts with ``kind``."""
        reply = self.command(verb, arg)
        if reply.kind != kind:
            raise FtpError(reply)
        return reply

    def login(self, user: str = "anonymous", password: str = "anonymous@") -> None:
        reply = self.command("USER", user)
        if reply.code == Code.NEED_PASSWORD:
            reply = self.command("PASS", password)
        if reply.kind != 2:
            raise FtpError(reply)
        reply = self.command("FEAT")
        if reply.code == Code.FEATURES:
            # The lines between "211-Features:" and "211 End", one per
            # feature: a name, then perhaps parameters ("HASH SHA-1*;SHA-256").
            for line in reply.text.split("\n")[1:-1]:
                name, _, params = line.strip().partition(" ")
                self.feature_params[name.upper()] = params.strip()
            self.features = set(self.feature_params)
        self.expect("TYPE", "I")
        self._choose_sha256()

    def _choose_sha256(self) -> None:
        """Make SHA-256 the algorithm HASH uses, if the server offers several.

        The HASH draft lists the algorithms in FEAT with a ``*`` on the one
        in use (proftpd: ``HASH CRC32;MD5;SHA-1*;SHA-256``); ``OPTS HASH
        SHA-256`` selects another. A server that offers no SHA-256 keeps
        HASH out of our features: the check then falls back to SIZE.
        """
        if "HASH" not in self.features:
            return
        algorithms = [name.strip() for name in self.feature_params["HASH"].split(";") if name.strip()]
        if [name.rstrip("*") for name in algorithms] in ([], ["SHA-256"]) or "SHA-256*" in algorithms:
            return                  # SHA-256 is the only one, or the selected one
        if "SHA-256" not in algorithms or self.command("OPTS", "HASH SHA-256").kind != 2:
            self.features.discard("HASH")

    def quit(self) -> None:
        try:
            self.command("QUIT")
        finally:
            self.close()

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None

    def abort(self, data=None) -> list[Reply]:
        """Stop the transfer under way, as RFC 959 4.1.3 describes and BSD
        ftp and ftplib do, and return the replies that settle it.

        The data connection is closed first, so the server stops sending at
        once. Then the abort goes out the way a Telnet user would interrupt
        a program: IP (interrupt process), then the Synch, which is a Data
        Mark sent as TCP urgent data so a server busy with the transfer
        notices it, then the ABOR command. The server answers the transfer
        (426 if it was still running, else its 226) and then the ABOR (226
        or 225): reading until nothing is owed keeps the channel in step.
        """
        if data is not None:
            data.close()
        self.unanswered += 1
        try:
            self.control.sendall(bytes([IAC, IP, IAC]), socket.MSG_OOB)
            self.control.sendall(bytes([DM]) + b"ABOR\r\n")
        except OSError as err:
            raise ConnectionLost(f"control connection broken: {err.strerror or err}") from None
        replies = []
        # The conversation follows one command at a time: the interrupted
        # command's replies come first, then ABOR's turn.
        while self.unanswered > 1:
            replies.append(self.read_reply())
        self.conversation.sent("ABOR")
        while self.unanswered > 0:
            replies.append(self.read_reply())
        return replies
