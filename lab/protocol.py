# ftpkit lab: starter code generated from the reference solution by
# `python -m solutions.generate`. Replace each `raise NotImplementedError(...)`
# with your code; lab/README.md says what each exercise asks for.
"""The control-channel protocol, with no sockets in sight ("sans-IO").

Everything here turns bytes into protocol events and protocol events into
bytes. Nothing here reads or writes a socket, so every rule of the protocol
can be tested by feeding it byte strings, and the same code serves the
server (which reads commands) and the client (which reads replies).

The pattern is the one h11 uses for HTTP::

    parser = CommandParser()
    parser.receive_data(sock.recv(4096))   # b"" means the peer closed
    event = parser.next_event()            # a Command, or NEED_DATA, or ...

References: RFC 959 (FTP) sections 4.1 (commands), 4.2 (replies) and 5.3
(syntax); RFC 854 (Telnet, whose IAC sequences may precede ABOR); RFC 2428
(EPSV, EPRT); RFC 3659 (SIZE); draft-bryan-ftpext-hash (HASH). Which
command may follow which is the business of conversation.py.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import IntEnum

CRLF = b"\r\n"

# The longest command or reply line we accept, not counting its CRLF. A
# peer that sends more is either broken or hostile; either way we must not
# buffer without limit.
MAX_LINE = 2048


# --- reply codes -------------------------------------------------------------

class Code(IntEnum):
    """Every reply code this kit sends, with the meaning RFC 959 gives it.

    The first digit says how the command went: 1 preliminary (wait for
    another reply), 2 done, 3 send more, 4 failed but try again later,
    5 failed for good.
    """
    OPENING_DATA = 150
    OK = 200
    FEATURES = 211
    SYSTEM_STATUS = 211      # the same code: STAT without an argument
    FILE_STATUS = 213
    HELP = 214
    SYSTEM_TYPE = 215
    READY = 220
    GOODBYE = 221
    NO_TRANSFER = 225        # data connection open, no transfer in progress (ABOR)
    TRANSFER_COMPLETE = 226
    PASSIVE = 227
    EXTENDED_PASSIVE = 229
    LOGGED_IN = 230
    FILE_ACTION_OK = 250
    PATH_CREATED = 257
    NEED_PASSWORD = 331
    PENDING = 350            # send the rest: RNTO after RNFR, RETR/STOR after REST
    SERVICE_UNAVAILABLE = 421
    CANNOT_OPEN_DATA = 425
    TRANSFER_ABORTED = 426
    LOCAL_ERROR = 451
    INSUFFICIENT_STORAGE = 452
    SYNTAX_ERROR = 500
    BAD_ARGUMENTS = 501
    NOT_IMPLEMENTED = 502
    BAD_SEQUENCE = 503
    BAD_PARAMETER = 504
    NETWORK_PROTOCOL_NOT_SUPPORTED = 522
    NOT_LOGGED_IN = 530
    FILE_UNAVAILABLE = 550
    NAME_NOT_ALLOWED = 553
    INVALID_RESTART = 554    # RFC 1123: REST beyond the end of the file


# --- events ------------------------------------------------------------------

class _NeedData:
    def __repr__(self):
        return "NEED_DATA"


NEED_DATA = _NeedData()
"""Returned by ``next_event`` when a whole line has not arrived yet."""


@dataclass(frozen=True)
class Command:
    """A command line from the client: ``RETR a.bin`` is Command("RETR", "a.bin")."""
    verb: str
    arg: str = ""


@dataclass(frozen=True)
class Reply:
    """A reply from the server.

    ``text`` is the reply without its codes: the first line's text after
    ``CODE-`` (or ``CODE `` for a one-line reply), the middle lines exactly
    as they came (leading spaces kept), and the last line's text after
    ``CODE ``, joined by ``\n``. So ``211-Features:`` / `` EPSV`` /
    ``211 End`` gives code 211 and text ``"Features:\n EPSV\nEnd"``.
    ``lines`` keeps the raw lines, codes and all (without CR LF)."""
    code: int
    text: str
    lines: tuple[str, ...] = field(default=(), compare=False)

    @property
    def kind(self) -> int:
        """The first digit: 1 preliminary, 2 done, 3 more needed, 4/5 failed."""
        return self.code // 100

    @property
    def is_error(self) -> bool:
        return self.code >= 400

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


@dataclass(frozen=True)
class LineTooLong:
    """A line longer than MAX_LINE arrived; it was thrown away."""
    length: int


@dataclass(frozen=True)
class NotUtf8:
    """A line that is not valid UTF-8 (RFC 2640 makes UTF-8 the encoding)."""
    raw: bytes


@dataclass(frozen=True)
class MalformedLine:
    """A line that is not a command (or not a reply): empty, or no verb/code."""
    raw: str


@dataclass(frozen=True)
class ConnectionClosed:
    """The peer closed the connection. ``unfinished`` is any half line left."""
    unfinished: bytes = b""


# --- line framing ------------------------------------------------------------

class LineFramer:
    """Cuts a byte stream into lines that end in CRLF.

    TCP delivers a stream, not messages: one ``recv`` may return half a line,
    or three lines and a bit. The framer keeps what it has been fed and hands
    back one complete line at a time. A bare LF is accepted as a line end too,
    which is what people typing into ``nc`` or ``telnet`` send.
    """

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self._buffer = bytearray()
        self._searched = 0          # bytes of _buffer already known to hold no LF
        self._discarding = 0        # >0 while skipping the rest of an overlong line
        self.closed = False

    def feed(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the peer closed the stream."""
        if not data:
            self.closed = True
        raise NotImplementedError('ex1: append the bytes to the buffer')

    def next_line(self) -> bytes | LineTooLong | None:
        """The next complete line without its line end, or None if there is none yet.

        A line longer than ``max_line`` (not counting its line end) is never
        returned and never held whole: it is reported once as
        :class:`LineTooLong`, either as soon as more than ``max_line`` bytes
        without an LF are buffered, or when its LF arrives (both are
        accepted), and the rest of it, up to its LF, is dropped. The line
        after it is read normally."""
        raise NotImplementedError('ex1: find the LF, cut the line (drop CR LF), enforce max_line')

    def unfinished(self) -> bytes:
        """Bytes received after the last complete line."""
        return bytes(self._buffer)


# --- the server's side: reading commands -------------------------------------

_VERB = re.compile(r"[A-Za-z]{3,4}")


def parse_command(line: str) -> Command | MalformedLine:
    """Split a command line into verb and argument (RFC 959 section 5.3).

    The verb is case-insensitive; the argument is everything after the first
    space, kept as it is, because file names may contain spaces.
    """
    raise NotImplementedError('ex1: split at the first space, upper-case the verb, check it is 3-4 letters')


# Telnet (RFC 854), which the control connection nominally speaks: IAC
# (0xFF) starts a command. Clients send two before ABOR, as RFC 959 section
# 4.1.3 asks: IP (interrupt process, 0xF4) and DM (data mark, 0xF2, sent as
# TCP urgent data). IAC IAC stands for a literal 0xFF. Only these two-byte
# commands are removed; the three-byte option negotiations (IAC WILL/WONT/
# DO/DONT x) are left alone, so their bytes still make a line "not UTF-8".
IAC = 0xFF
_TELNET_TWO_BYTE = re.compile(rb"\xff([\xf0-\xfa\xff])")


def strip_telnet(line: bytes) -> bytes:
    """``b"\\xff\\xf4\\xff\\xf2ABOR"`` -> ``b"ABOR"``; IAC IAC becomes one 0xFF."""
    if IAC not in line:
        return line
    return _TELNET_TWO_BYTE.sub(lambda m: b"\xff" if m.group(1) == b"\xff" else b"", line)


class CommandParser:
    """Server side: bytes from the client in, :class:`Command` events out."""

    def __init__(self, max_line: int = MAX_LINE):
        self._framer = LineFramer(max_line)

    def receive_data(self, data: bytes) -> None:
        self._framer.feed(data)

    @property
    def closed(self) -> bool:
        """True once the client has closed its side of the connection."""
        return self._framer.closed

    def next_event(self):
        line = self._framer.next_line()
        if line is None:
            return ConnectionClosed(self._framer.unfinished()) if self._framer.closed else NEED_DATA
        if isinstance(line, LineTooLong):
            return line
        line = strip_telnet(line)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return NotUtf8(line)
        return parse_command(text)


# --- the client's side: reading replies --------------------------------------

_REPLY_LINE = re.compile(r"(\d{3})([ -])(.*)", re.DOTALL)


class ReplyParser:
    """Client side: bytes from the server in, :class:`Reply` events out.

    A reply is one line ``226 Transfer complete.`` or several: the first
    line has a hyphen after the code (``211-Features:``), and the reply ends
    at the first line that starts with the same code and a space.
    """

    def __init__(self, max_line: int = MAX_LINE):
        self._framer = LineFramer(max_line)
        self._lines: list[str] = []

    def receive_data(self, data: bytes) -> None:
        self._framer.feed(data)

    def next_event(self):
        """The next whole :class:`Reply` (see ``Reply.text`` for its text), or
        NEED_DATA while its last line has not arrived."""
        while True:
            line = self._framer.next_line()
            if line is None:
                return ConnectionClosed(self._framer.unfinished()) if self._framer.closed else NEED_DATA
            if isinstance(line, LineTooLong):
                return line
            text = line.decode("utf-8", "replace")
            raise NotImplementedError("ex1: collect lines until one starts with the first line's code and a space; text as Reply says")


# --- formatting --------------------------------------------------------------

def format_command(verb: str, arg: str = "") -> bytes:
    """``format_command("RETR", "a.bin")`` -> ``b"RETR a.bin\\r\\n"``."""
    line = f"{verb} {arg}" if arg else verb
    if "\r" in line or "\n" in line:
        raise ValueError("a command cannot contain a line break")
    return line.encode("utf-8") + CRLF


def format_reply(code: int, text: str) -> bytes:
    """One reply, single- or multi-line (when ``text`` contains newlines).

    In a multi-line reply, a middle line that starts with a digit is
    indented by one space, so a client cannot mistake it for the last line
    (RFC 959 section 4.2).
    """
    raise NotImplementedError('ex1: "CODE text" CRLF; for several lines "CODE-first", middle lines, "CODE last"')


# --- data-channel addresses --------------------------------------------------
#
# PASV and PORT write an IPv4 address and port as six decimal bytes:
# 127.0.0.1 port 49153 is "127,0,0,1,192,1" because 49153 = 192 * 256 + 1.
# EPSV and EPRT (RFC 2428) replace this with a format that also carries IPv6.

def format_host_port(host: str, port: int) -> str:
    """``("127.0.0.1", 49153)`` -> ``"127,0,0,1,192,1"``."""
    raise NotImplementedError("ex2: four address bytes then the port's high and low byte")


def parse_host_port(text: str) -> tuple[str, int]:
    """``"127,0,0,1,192,1"`` -> ``("127.0.0.1", 49153)``; ValueError if malformed."""
    raise NotImplementedError('ex2: six numbers 0-255; port = p1 * 256 + p2')


def format_pasv_reply(host: str, port: int) -> str:
    return f"Entering Passive Mode ({format_host_port(host, port)})."


def parse_pasv_reply(text: str) -> tuple[str, int]:
    """Find the address in a 227 reply. RFC 959 leaves the brackets optional."""
    match = re.search(r"(\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+)", text)
    if not match:
        raise ValueError(f"no address in 227 reply: {text!r}")
    return parse_host_port(match.group(1).replace(" ", ""))


def format_epsv_reply(port: int) -> str:
    """RFC 2428: only the port is given; the client reuses the control address."""
    return f"Entering Extended Passive Mode (|||{port}|)"


def parse_epsv_reply(text: str) -> int:
    match = re.search(r"\((.)\1\1(\d+)\1\)", text)
    if not match or not 0 < int(match.group(2)) <= 65535:
        raise ValueError(f"no port in 229 reply: {text!r}")
    return int(match.group(2))


def format_eprt_arg(host: str, port: int) -> str:
    """``("127.0.0.1", 49153)`` -> ``"|1|127.0.0.1|49153|"`` (2 for IPv6)."""
    family = 2 if ipaddress.ip_address(host).version == 6 else 1
    return f"|{family}|{host}|{port}|"


def parse_eprt_arg(text: str) -> tuple[str, int]:
    """The argument of EPRT; ValueError if malformed, or if the family
    number disagrees with the address."""
    raise NotImplementedError('ex6: split on the delimiter (the first character): family, address, port')


class UnsupportedFamily(ValueError):
    """EPRT named a network protocol other than 1 (IPv4) or 2 (IPv6): reply 522."""


def parse_hash_reply(text: str) -> tuple[str, int, int, str]:
    """``"SHA-256 0-5 <hex> a.bin"`` -> ("SHA-256", 0, 5, "<hex>").

    The byte range is start-end with ``end`` exclusive: a whole file of N
    bytes is ``0-N``, and an empty file ``0-0``.
    """
    algorithm, byte_range, digest, *_ = text.split(" ", 3)
    start, _, end = byte_range.partition("-")
    return algorithm, int(start), int(end), digest.lower()
