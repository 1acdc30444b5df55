"""Text a peer wrote, made safe to show on a terminal.

Anything in a trace may have come from the other end of a connection: a
command line, a reply, a file name, an error message, even a field a
hand-edited log made up. Written to a terminal as it is, an escape sequence
in it would move the cursor, retitle the window or clear the screen. Every
piece of such text goes through :func:`printable` on its way out, which
shows the characters a terminal would obey as escapes: ``\\x1b``, ``\\r``,
``\\u202e``.
"""

from __future__ import annotations

import re

# C0 controls, DEL and C1 controls (U+009B is a CSI on its own), lone
# surrogates (from a JSON "\ud800", or a file name in no encoding), and the
# bidirectional overrides that make text read in another order than it is.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f"
                     "\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text) -> str:
    """``text`` with every character a terminal would act on shown as an escape."""
    text = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(_escape, text)


def has_unsafe(text: str) -> bool:
    """True when ``text`` holds a character :func:`printable` would escape."""
    return _UNSAFE.search(text) is not None
