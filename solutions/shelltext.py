"""What the client shell prints, in words a user can read and a terminal can't misread.

The shell prints two kinds of text that it did not write itself. Text from
the server (replies, listings, file names) is chosen by the server, so
``escaped`` makes it harmless on a terminal. The outcome of a transfer (its
rate, whether the copies match, how far an interrupted one got) arrives as
numbers and flags, so ``rate``, ``describe_verdict`` and
``describe_interruption`` say it in one line each.
"""

from __future__ import annotations

import unicodedata

from .ftpclient import TransferInterrupted, Verdict


def escaped(text: str) -> str:
    """``text`` from the peer, safe to print on a terminal.

    A server chooses the bytes of its replies, listings and file names, and
    a terminal obeys control characters: ESC starts sequences that retitle,
    recolour or clear the screen (or, on some terminals, answer back as if
    typed), CR overwrites what was printed. So every control character
    except newline and tab (C0, DEL, C1, and the invisible bidirectional
    overrides that reorder text) is shown as a visible escape, ``\\x1b``.
    """
    return "".join(ch if ch in "\n\t" or not _is_control(ch) else _escape(ch) for ch in text)


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf")


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def rate(bytes_per_second: float) -> str:
    for unit in ("B/s", "KiB/s", "MiB/s", "GiB/s"):
        if bytes_per_second < 1024 or unit == "GiB/s":
            return f"{bytes_per_second:.1f} {unit}"
        bytes_per_second /= 1024


def describe_verdict(verdict: Verdict) -> str:
    """The integrity line after a transfer: how the copies were compared
    (HASH, else SIZE, else not at all) and what came of it."""
    if verdict.method == "HASH":
        if verdict.ok:
            return f"integrity: SHA-256 matches the server's ({verdict.local[:16]}…)"
        return f"integrity: SHA-256 MISMATCH: local {verdict.local[:16]}…, server {verdict.remote[:16]}…"
    if verdict.method == "SIZE":
        if verdict.ok:
            return f"integrity: size matches the server's ({verdict.local} bytes; no HASH to compare contents)"
        return f"integrity: size MISMATCH: local {verdict.local} bytes, server {verdict.remote}"
    if verdict.remote:
        # Why not: a failed HASH or SIZE quotes the server's reply, hence escaped.
        return f"integrity: not checked ({escaped(verdict.remote)})"
    return "integrity: not checked (the server offers neither HASH nor SIZE)"


def describe_interruption(stop: TransferInterrupted) -> str:
    """What Ctrl-C stopped, how far it had got, and what became of the file."""
    name = escaped(stop.path)
    what = {"RETR": f"download of {name} aborted", "STOR": f"upload of {name} aborted",
            "HASH": f"check of {name} stopped"}.get(stop.command, f"{stop.command} {name} aborted")
    return f"interrupted: {what} after {stop.moved} bytes" + (f"; {stop.note}" if stop.note else "")
