"""Control-channel lines for the trace: commands and replies, and floods folded.

A traced control connection hands each direction's bytes to a
:class:`LineTap`, which cuts them into lines and writes a ``command`` event
for each command line and a ``reply`` event for each complete (possibly
multi-line) reply, with the stream offset of its first byte.

**Floods.** An event costs a few hundred bytes of log however short the line
is, so a peer that sends bare line ends (one byte each, each answered by a
``500``) would make the log hundreds of times larger than what it sent.
*Error lines* (a command line with no command in it, a 4xx or 5xx reply, and
the raw send or recv that carried nothing else) are therefore paid for from
an :class:`ErrorBudget`: a few hundred free, then one more per so many bytes
of input. Once the budget is spent, consecutive error lines in one direction
are *folded*: written as one event of the same type whose ``offset`` and
``len`` span them all and whose ``repeat`` says how many there were (the
text is the first one's). A fold ends at the next line that is not an error,
or when the connection closes; a long flood is written every ``FOLD_LIMIT``
lines, as folds still. Good lines are never
folded: the budget bounds what junk costs, not what a session says.
"""

from __future__ import annotations

from .announce import ends_reply, is_reply_line, reply_code  # the one reader of reply lines

# Error events written one by one before any input has paid for them: more
# than a normal session ever has (a class's worth of 550s), so that only
# floods are folded.
ERROR_EVENTS_FREE = 500
# After that, one error event per this many bytes received. An event is about
# 250 bytes, so error events add at most about 1x the input to the log.
INPUT_BYTES_PER_ERROR_EVENT = 256
# A fold is written out after this many lines even if the flood goes on, so
# that a live viewer sees it and its span stays short.
FOLD_LIMIT = 10_000
# Text longer than this (in characters) is cut, so that no event line exceeds
# the reader's line limit (trace.tracer.MAX_LINE_BYTES), escapes included.
MAX_TEXT = 64 * 1024
# A line with no end yet keeps at most this many of its last bytes.
MAX_PENDING = 64 * 1024


def is_error_line(line: str) -> bool:
    """A negative reply (4xx, 5xx), or a command line with no command in it.

    A command verb is three or four ASCII letters (RFC 959 section 5.3.1);
    an empty line or a line of punctuation costs the sender next to nothing.
    """
    code = reply_code(line)
    if code is not None:
        return code >= 400
    verb = line.partition(" ")[0]
    return not (3 <= len(verb) <= 4 and verb.isascii() and verb.isalpha())


def cut(text: str) -> str:
    """``text``, cut to MAX_TEXT characters (and saying so)."""
    if len(text) <= MAX_TEXT:
        return text
    return text[:MAX_TEXT] + f"… ({len(text) - MAX_TEXT} more characters not traced)"


def text_of(data: bytes) -> str:
    """Raw control bytes as trace text: decoded, cut, and the password hidden."""
    return cut(redact(data.decode("utf-8", "replace")))


def redact(text: str) -> str:
    """Hide the argument of PASS wherever it appears in raw control text."""
    if "PASS" not in text.upper():
        return text
    out = []
    for line in text.split("\n"):
        head = line[:5].upper()
        if head == "PASS ":
            line = line[:5] + "****" + ("\r" if line.endswith("\r") else "")
        out.append(line)
    return "\n".join(out)


class ErrorBudget:
    """How many error events one process may still write one by one."""

    def __init__(self):
        self.input_bytes = 0       # bytes received by this process's traced sockets
        self.spent = 0             # error events written one by one

    def received(self, n: int) -> None:
        self.input_bytes += n

    def take(self) -> bool:
        """Pay for one error event; False when the budget is spent (fold it)."""
        if self.spent >= ERROR_EVENTS_FREE + self.input_bytes // INPUT_BYTES_PER_ERROR_EVENT:
            return False
        self.spent += 1
        return True


class Fold:
    """Consecutive error events of one kind in one direction, written as one."""

    __slots__ = ("type", "fields", "offset", "end", "t", "count")

    def __init__(self, type: str, fields: dict, offset: int, length: int, t: float | None):
        self.type, self.fields = type, fields     # the first event's own fields
        self.offset, self.end, self.t = offset, offset + length, t
        self.count = 1

    def add(self, offset: int, length: int, t: float | None) -> None:
        self.end = max(self.end, offset + length)
        self.t = t
        self.count += 1

    def emit(self, tracer, identity: dict) -> None:
        # Stamped with the time of its last line, so it sorts where it is written.
        tracer.emit(self.type, t=self.t, **identity, **self.fields, offset=self.offset,
                    len=self.end - self.offset, repeat=self.count)


class LineTap:
    """One direction of a traced control connection, cut into lines."""

    def __init__(self, sock, direction: str, budget: ErrorBudget):
        self.sock = sock               # the TracedSocket: its identity and tracer
        self.direction = direction
        self.budget = budget
        self.pending = b""
        self.pending_offset = 0
        self.reply_lines: list[str] = []
        self.reply_offset = 0
        self.fold: Fold | None = None  # error lines not yet written

    # -- the raw send or recv that carried the bytes -----------------------------
    def only_error_lines(self, data: bytes) -> bool:
        """True when ``data`` is whole lines, each one an error line."""
        if self.pending or self.reply_lines or not data.endswith(b"\n"):
            return False
        lines = data.decode("utf-8", "replace").split("\n")[:-1]
        return all(is_error_line(line.rstrip("\r")) for line in lines)

    # -- lines ---------------------------------------------------------------------
    def feed(self, data: bytes, offset: int, t: float | None = None) -> None:
        if not self.pending:
            self.pending_offset = offset
        self.pending += data
        while True:
            end = self.pending.find(b"\n")
            if end < 0:
                # A line with no end yet: keep at most a little of it, so a
                # hostile peer cannot make the tracer buffer without limit.
                if len(self.pending) > MAX_PENDING:
                    self.pending_offset += len(self.pending) - MAX_PENDING
                    self.pending = self.pending[-MAX_PENDING:]
                return
            raw, self.pending = self.pending[:end + 1], self.pending[end + 1:]
            line_offset = self.pending_offset
            self.pending_offset += len(raw)
            self._line(raw.rstrip(b"\r\n").decode("utf-8", "replace"), line_offset, len(raw), t)

    def _line(self, line: str, offset: int, length: int, t: float | None) -> None:
        if self.reply_lines or is_reply_line(line):
            if not self.reply_lines:
                self.reply_offset = offset
            self.reply_lines.append(line)
            code = reply_code(self.reply_lines[0])
            # A reply ends on a line that starts with its code and a space
            # (RFC 959 section 4.2); "123-" opens a multi-line reply.
            if ends_reply(line, code):
                text = cut("\n".join(self.reply_lines))
                self.reply_lines = []
                self._event("reply", code >= 400, dict(code=code, text=text),
                            self.reply_offset, offset + length - self.reply_offset, t)
            return
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb == "PASS" and arg:
            arg = "****"
        self._event("command", is_error_line(line),
                    dict(verb=cut(verb), arg=cut(arg), text=cut(f"{verb} {arg}".rstrip())),
                    offset, length, t)

    def _event(self, type: str, error: bool, fields: dict, offset: int, length: int,
               t: float | None) -> None:
        if error and self.fold is not None:
            if self.fold.count < FOLD_LIMIT:
                self.fold.add(offset, length, t)
                return
            self.flush()              # a long flood: written in pieces, still folded
            self.fold = Fold(type, fields, offset, length, t)
            return
        self.flush()
        if error and not self.budget.take():
            self.fold = Fold(type, fields, offset, length, t)
            return
        self.sock.tracer.emit(type, t=t, **self.sock.identity(), dir=self.direction,
                              **fields, offset=offset, len=length)

    def flush(self) -> None:
        """Write the error lines folded so far, if any."""
        if self.fold is not None:
            fold, self.fold = self.fold, None
            fold.emit(self.sock.tracer, dict(self.sock.identity(), dir=self.direction))
