"""Text the server sends or logs, made safe: a client chooses what it sends.

Replies and log lines echo what the client sent (a path, a command), and a
client may send anything: a name almost a whole line long, a bare CR, an
escape sequence that drives a terminal. ``fit_for_a_reply`` makes reply
text fit the control channel, ``printable`` makes log text fit a terminal,
and ``reason`` says in a few words why a socket or the disk said no.
"""

from __future__ import annotations

import socket

from .protocol import MAX_LINE

# Control characters a client may put in a name (anything below a space,
# DEL and the C1 controls), each shown as "?" when the name is echoed in a reply.
_CONTROL_CHARACTERS = {code: "?" for code in [*range(0x20), *range(0x7F, 0xA0)]}


def fit_for_a_reply(text: str) -> str:
    """The reply text made safe to send: each line cut to fit the line limit,
    and no control characters.

    Replies echo what the client sent ("550 <name>: no such file."). A name
    may be almost MAX_LINE bytes long, and with the code and the rest of the
    sentence around it the line would be longer than clients accept. A name
    may also hold a bare CR, which some clients take for a line end, or an
    escape sequence that would drive the terminal of whoever reads the reply.
    """
    room = MAX_LINE - len("123- ...")
    lines = text.split("\n")
    for i, line in enumerate(lines):
        line = line.translate(_CONTROL_CHARACTERS)
        raw = line.encode("utf-8")
        if len(raw) > room:
            line = raw[:room].decode("utf-8", "ignore") + "..."
        lines[i] = line
    return "\n".join(lines)


def printable(text: str) -> str:
    """Text a client sent, fit for the server's own terminal: control
    characters (ESC above all) shown as escapes, never sent to the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def reason(err: OSError) -> str:
    """Why an operation failed, in the few words a reply gives (425, 426, 451)."""
    if isinstance(err, TimeoutError) or isinstance(err, socket.timeout):
        return "timed out"
    return err.strerror or str(err) or type(err).__name__
