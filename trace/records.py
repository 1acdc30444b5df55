"""What a traced session is made of: connections and their ends, listening
sockets, transfers, errors, and the steps of the sequence diagram.

These are plain records; :mod:`trace.model` builds them from the events of
both sides, :mod:`trace.presentation` puts them in words.
"""

from __future__ import annotations

CLIENT, SERVER = "client", "server"
ROLES = (CLIENT, SERVER)

# Kinds of step, in the order a connection usually goes through them.
OPEN, LINE, DATA, CLOSE, NOTE = "open", "line", "data", "close", "note"

# Outcomes of a transfer, in the order the summary prefers them when the two
# sides disagree: any failure first, then a side that checked the bytes
# (the client checks a download with HASH; the server just says "ok").
VERDICT_ORDER = ("mismatch", "aborted", "unfinished", "verified", "unverified", "ok")


def other(role: str) -> str:
    return SERVER if role == CLIENT else CLIENT


class End:
    """One process's end of a TCP connection.

    ``opened`` and ``closed`` say where in the input its connect (or accept)
    and its close came: the number of events fed to the model before them,
    that is their index in the list of events read (the grader compares them
    and names steps by them).
    """

    __slots__ = ("role", "pid", "conn", "local", "remote", "how", "listener", "opened", "closed",
                 "connection")

    def __init__(self, role, pid, conn, local, remote):
        self.role, self.pid, self.conn = role, pid, conn
        self.local, self.remote = local, remote
        self.how = None          # "connect" or "accept"; None if the log began later
        self.listener: int | None = None   # accepted: the conn of the listening socket
        self.opened: int | None = None     # None if the log began later
        self.closed: int | None = None     # None while it is open
        self.connection: Connection | None = None

    @property
    def channel(self) -> str:
        return self.connection.channel


class Listener:
    """One process's listening socket: the control port, or a data port
    (PASV, PORT) that should accept one connection and stop listening.
    ``opened`` and ``closed`` are positions in the input, as for an :class:`End`."""

    __slots__ = ("role", "pid", "conn", "channel", "local", "opened", "closed")
    how = "listen"               # as End.how: how the socket came to be

    def __init__(self, role, pid, conn, channel, local, opened):
        self.role, self.pid, self.conn = role, pid, conn
        self.channel, self.local = channel, local
        self.opened: int = opened
        self.closed: int | None = None     # None while it listens


class Connection:
    """One TCP connection, put together from the ends the logs show."""

    __slots__ = ("number", "channel", "ends", "t_open", "t_close", "connector",
                 "client_address", "server_address", "carried", "delivered",
                 "awaiting", "pending_close", "last_command")

    def __init__(self, number: int, channel: str, t_open: float):
        self.number = number              # session-wide: #1, #2, ... in order of opening
        self.channel = channel            # "control" or "data"
        self.ends: dict[str, End] = {}    # role -> End
        self.t_open = t_open
        self.t_close: float | None = None  # when the last end closed
        self.connector: str | None = None  # the role that called connect()
        self.client_address: str | None = None
        self.server_address: str | None = None
        # Bytes sent by each role: as its own log counts them (carried) and
        # as the receiver's log counts them (delivered). Either may be absent.
        self.carried = {CLIENT: 0, SERVER: 0}
        self.delivered = {CLIENT: 0, SERVER: 0}
        self.awaiting: dict = {}          # (sender, offset) -> control Step waiting for its copy
        self.pending_close: Step | None = None
        self.last_command: str | None = None

    @property
    def label(self) -> str:
        return f"#{self.number}"

    @property
    def paired(self) -> bool:
        return len(self.ends) == 2

    @property
    def open(self) -> bool:
        return self.t_close is None

    def bytes_from(self, role: str) -> int:
        """Bytes the given role sent on this connection, by the best count we have."""
        return max(self.carried[role], self.delivered[role])

    @property
    def lifetime(self) -> float | None:
        return None if self.t_close is None else self.t_close - self.t_open

    @property
    def seen_by(self) -> str:
        """Which logs show this connection: 'both', 'client' or 'server'."""
        return "both" if self.paired else next(iter(self.ends), "?")


class Step:
    """One row of the sequence diagram.

    ``sender`` is the role a message travels from (``client`` means
    client-to-server); ``seen`` says which logs hold it: ``both``,
    ``client`` or ``server``.
    """

    __slots__ = ("kind", "t", "connection", "sender", "text", "code", "offset", "length",
                 "seen", "final", "role", "style", "event", "settled", "channel", "repeat")

    def __init__(self, kind, t, connection=None, *, sender=None, text="", code=None,
                 offset=0, length=0, seen="both", final=False, role=None, style=None,
                 event=None, settled=True, channel=None, repeat=1):
        self.kind, self.t, self.connection = kind, t, connection
        self.sender, self.text, self.code = sender, text, code
        self.offset, self.length = offset, length
        self.repeat = repeat              # lines the tracer folded into this one (a flood)
        self.seen, self.final = seen, final
        self.role, self.style, self.event = role, style, event
        self.settled = settled
        self.channel = connection.channel if connection is not None else channel

    def __repr__(self):
        where = self.connection.label if self.connection else "-"
        return f"<Step {self.kind} {where} {self.sender or self.role or ''} {self.text!r}>"


class Transfer:
    """One file or listing, merged from the transfer events of both sides."""

    __slots__ = ("command", "path", "direction", "t_start", "connection", "sides")

    def __init__(self, command, path, direction, t_start, connection):
        self.command, self.path, self.direction = command, path, direction
        self.t_start = t_start
        self.connection: Connection | None = connection
        self.sides: dict[str, dict] = {}  # role -> {bytes, duration, sha256, verdict}

    @property
    def bytes(self) -> int:
        return max((side["bytes"] for side in self.sides.values()), default=0)

    @property
    def duration(self) -> float:
        return max((side["duration"] for side in self.sides.values()), default=0.0)

    @property
    def throughput(self) -> float | None:
        """Bytes per second, or None when the duration is too short to say."""
        return self.bytes / self.duration if self.duration > 0 else None

    @property
    def verdict(self) -> str:
        hashes = {side.get("sha256") for side in self.sides.values()}
        if len(self.sides) == 2 and None not in hashes:
            # Both sides hashed the bytes: the viewer can check integrity itself.
            return "verified" if len(hashes) == 1 else "mismatch"
        said = [side["verdict"] for side in self.sides.values()]
        return min(said, key=lambda v: VERDICT_ORDER.index(v) if v in VERDICT_ORDER else -1)


class ErrorRecord:
    """An error reply (4xx/5xx) or an error a program reported.

    ``count`` is more than one for replies the tracer folded (a flood).
    """

    __slots__ = ("t", "role", "code", "text", "connection", "command", "count")

    def __init__(self, t, role, code, text, connection=None, command=None, count=1):
        self.t, self.role, self.code, self.text = t, role, code, text
        self.connection, self.command, self.count = connection, command, count
