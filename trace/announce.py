"""How the control channel announces a data connection: the one parser.

An FTP data connection is announced on the control connection before it
opens, in one of four ways:

* ``227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)``: the server listens
  (PASV, RFC 959; the brackets are optional, so any six numbers count);
* ``229 Entering Extended Passive Mode (|||port|)``: the same, port only
  (EPSV, RFC 2428; the client reuses the control connection's host);
* ``PORT h1,h2,h3,h4,p1,p2``: the client listens (RFC 959);
* ``EPRT |family|host|port|``: the same for IPv4 or IPv6 (RFC 2428).

Everything in ``trace/`` that needs to know which port a data connection
will use asks this module: the correlation of a trace with a capture
(:func:`announcement_of_event`), the live capture filter reading raw
control-channel lines (:func:`announcement_in_line`), and anything that
tells a reply line from a command line (:func:`reply_code`).

Parsing here is lenient on purpose: it reads what a peer actually sent,
which may be a student's not-quite-right reply, and answers ``None`` rather
than raising when there is nothing to read.
"""

from __future__ import annotations

import re

from .addresses import normal_host

__all__ = ["TRANSFER_VERBS", "Announcement", "parse_announcement", "announcement_in_line",
           "announcement_of_event", "reply_code", "is_reply_line", "ends_reply"]

# Commands that use a data connection opened after a PASV/EPSV or PORT/EPRT.
TRANSFER_VERBS = frozenset({"RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD"})

# (host, port); host is None for EPSV, which names only a port.
Announcement = tuple[str | None, int]

_SIX_NUMBERS = re.compile(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")
_EPSV_PORT = re.compile(r"\((.)\1\1(\d+)\1\)")        # "(|||6446|)": any delimiter


def parse_announcement(kind: str, text: str) -> Announcement | None:
    """The ``(host, port)`` a PASV/EPSV reply or PORT/EPRT command announces.

    ``kind`` is ``"227"``, ``"229"``, ``"PORT"`` or ``"EPRT"``; ``text`` the
    reply text or the command's argument. EPSV names no host (``None``).
    ``None`` if ``text`` announces nothing readable.
    """
    if kind in ("227", "PORT"):
        match = _SIX_NUMBERS.search(text)
        if not match:
            return None
        numbers = [int(n) for n in match.groups()]
        if any(n > 255 for n in numbers):
            return None
        return ".".join(map(str, numbers[:4])), numbers[4] * 256 + numbers[5]
    if kind == "229":
        match = _EPSV_PORT.search(text)
        return (None, int(match.group(2))) if match else None
    if kind == "EPRT":
        text = text.strip()
        parts = text[1:].split(text[0]) if text else []
        if len(parts) >= 3 and parts[2].isdigit():
            return normal_host(parts[1]), int(parts[2])
    return None


def reply_code(line: str) -> int | None:
    """The code of a reply line (``"227 ..."``, ``"211-..."``, ``"200"``),
    or ``None`` if the line is not one (a command, a continuation line).

    RFC 959 section 4.2: three digits, then a space, a hyphen (the first
    line of a multi-line reply) or the end of the line.
    """
    if len(line) >= 3 and line[:3].isdigit() and (len(line) == 3 or line[3] in " -"):
        return int(line[:3])
    return None


def is_reply_line(line: str) -> bool:
    return reply_code(line) is not None


def ends_reply(line: str, code: int) -> bool:
    """Whether ``line`` is the last line of a reply with this ``code``: the
    same code followed by a space or nothing (``"211 End"``)."""
    return reply_code(line) == code and (len(line) == 3 or line[3] == " ")


def announcement_in_line(line: str) -> Announcement | None:
    """The data connection a raw control-channel line announces, if any:
    a 227 or 229 reply line, or a PORT or EPRT command line."""
    line = line.strip()
    code = reply_code(line)
    if code in (227, 229):
        return parse_announcement(str(code), line)
    verb, _, arg = line.partition(" ")
    verb = verb.upper()
    if verb in ("PORT", "EPRT") and arg:
        return parse_announcement(verb, arg)
    return None


def announcement_of_event(event) -> Announcement | None:
    """The data connection a trace event announces, if any: a ``reply``
    event with code 227 or 229, or a ``command`` event PORT or EPRT."""
    if event.get("type") == "reply" and event.get("code") in (227, 229):
        return parse_announcement(str(event["code"]), event.get("text", ""))
    if event.get("type") == "command" and event.get("verb") in ("PORT", "EPRT"):
        return parse_announcement(event["verb"], event.get("arg", ""))
    return None
