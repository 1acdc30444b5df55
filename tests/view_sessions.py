"""Hand-built trace logs for the viewer's tests: sessions whose every byte and
every timestamp the tests know, written as the tracer would write them.

A :class:`Script` writes both sides of each happening (the sender's event
and the receiver's event), so one script gives a log written by both sides,
and ``write(path, roles=("client",))`` gives the one-sided log of either.
"""

from __future__ import annotations

import json

from trace.reader import time_order_key

T0 = 1_700_000_000.0          # fixed, so snapshots do not change
CLIENT_PID, SERVER_PID = 4001, 4002
LATENCY = 0.0002              # a message's receive event comes this much after its send


class Script:
    def __init__(self):
        self.events: list[dict] = []
        self.seq = {"client": 0, "server": 0}
        self.next_conn = {"client": 0, "server": 0}

    # -- low level ------------------------------------------------------------------
    def emit(self, role: str, t: float, type: str, **fields) -> dict:
        event = {"type": type, "t": round(T0 + t, 6), "seq": self.seq[role], "role": role,
                 "pid": CLIENT_PID if role == "client" else SERVER_PID}
        event.update(fields)
        self.seq[role] += 1
        self.events.append(event)
        return event

    def new_conn(self, role: str) -> int:
        self.next_conn[role] += 1
        return self.next_conn[role]

    def write(self, path, roles=("client", "server")) -> None:
        """Write the events of the given roles, in time order, as JSON Lines."""
        chosen = [e for e in self.events if e["role"] in roles]
        chosen.sort(key=time_order_key)
        with open(path, "w", encoding="utf-8") as out:
            for event in chosen:
                out.write(json.dumps(event, separators=(",", ":")) + "\n")

    # -- happenings ---------------------------------------------------------------------
    def header(self, role: str, t: float) -> None:
        self.emit(role, t, "header", format="ftpkit-trace", schema=1, host="lab",
                  start=round(T0 + t, 6))

    def listen(self, role: str, t: float, channel: str, local: str) -> int:
        conn = self.new_conn(role)
        self.emit(role, t, "listen", conn=conn, channel=channel, local=local)
        return conn

    def close_listener(self, role: str, t: float, conn: int, channel: str, local: str) -> None:
        self.emit(role, t, "close", conn=conn, channel=channel, local=local, remote=None)

    def connect(self, t: float, channel: str, connector: str, client_addr: str,
                server_addr: str, listener: int) -> "Link":
        """A TCP connection: ``connector`` connects, the other side accepts."""
        link = Link(self, channel, client_addr, server_addr)
        acceptor = "server" if connector == "client" else "client"
        fields = link.identity(connector)
        self.emit(connector, t, "connect", **fields)
        self.emit(acceptor, t + LATENCY, "accept", listener=listener, **link.identity(acceptor))
        return link


class Link:
    """Both ends of one TCP connection, with their stream offsets."""

    def __init__(self, script: Script, channel: str, client_addr: str, server_addr: str):
        self.script = script
        self.channel = channel
        self.address = {"client": client_addr, "server": server_addr}
        self.conn = {"client": script.new_conn("client"), "server": script.new_conn("server")}
        self.sent = {"client": 0, "server": 0}       # by each role
        self.received = {"client": 0, "server": 0}   # by each role

    def identity(self, role: str) -> dict:
        peer = "server" if role == "client" else "client"
        return {"conn": self.conn[role], "channel": self.channel,
                "local": self.address[role], "remote": self.address[peer]}

    def line(self, sender: str, t: float, text: str) -> None:
        """A control line: raw send/recv plus the command or reply event, both sides."""
        receiver = "server" if sender == "client" else "client"
        raw = (text + "\r\n").encode("utf-8", "surrogatepass")
        offset = self.sent[sender]
        is_reply = text[:3].isdigit()
        for role, when, kind, direction in ((sender, t, "send", "out"),
                                            (receiver, t + LATENCY, "recv", "in")):
            base = dict(self.identity(role), dir=direction, offset=offset, len=len(raw))
            self.script.emit(role, when, kind, text=text + "\r\n", **base)
            if is_reply:
                self.script.emit(role, when, "reply", code=int(text[:3]), text=text, **base)
            else:
                verb, _, arg = text.partition(" ")
                self.script.emit(role, when, "command", verb=verb.upper(), arg=arg,
                                 text=text, **base)
        self.sent[sender] += len(raw)
        self.received[receiver] += len(raw)

    def data(self, sender: str, t: float, sizes: list[int], step: float,
             recv_sizes: list[int] | None = None) -> float:
        """Data segments: the sender's sends, then the receiver's recvs (cut
        into ``recv_sizes`` pieces, which need not match). Returns the time after."""
        receiver = "server" if sender == "client" else "client"
        for size in sizes:
            self.script.emit(sender, t, "send", dir="out", offset=self.sent[sender], len=size,
                             **self.identity(sender))
            self.sent[sender] += size
            t = round(t + step, 6)
        total = sum(sizes)
        pieces = recv_sizes or sizes
        assert sum(pieces) == total
        when = t - step * len(sizes) + LATENCY
        for size in pieces:
            self.script.emit(receiver, when, "recv", dir="in", offset=self.received[receiver],
                             len=size, **self.identity(receiver))
            self.received[receiver] += size
            when = round(when + step * len(sizes) / len(pieces), 6)
        return t

    def eof(self, role: str, t: float) -> None:
        """``role`` reads the end of stream (its peer closed)."""
        self.script.emit(role, t, "recv", dir="in", offset=self.received[role], len=0,
                         **self.identity(role))

    def close(self, role: str, t: float) -> None:
        self.script.emit(role, t, "close", sent=self.sent[role], received=self.received[role],
                         **self.identity(role))


# --- the sessions ------------------------------------------------------------------------

RETR_SIZES = [65536, 65536, 65536, 10000]     # 206608 bytes, sent 1 ms apart
RETR_BYTES = sum(RETR_SIZES)
RETR_DURATION = 0.006


def _greeted(s: Script) -> Link:
    """Both sides start tracing, the client connects, the server greets it."""
    s.header("server", 0.0)
    listener = s.listen("server", 0.0005, "control", "127.0.0.1:2121")
    s.header("client", 0.001)
    control = s.connect(0.002, "control", "client", "127.0.0.1:50000", "127.0.0.1:2121",
                        listener)
    control.line("server", 0.003, "220 ftpkit ready")
    return control


def _quit(control: Link, t: float) -> None:
    """QUIT, 221, and the server closes first."""
    control.line("client", t, "QUIT")
    control.line("server", round(t + 0.001, 6), "221 Bye")
    control.close("server", round(t + 0.002, 6))
    control.eof("client", round(t + 0.0025, 6))
    control.close("client", round(t + 0.003, 6))


def passive_session() -> Script:
    """Log in, PASV + RETR a.bin (206608 bytes), a 550 for a missing file, QUIT."""
    s = Script()
    control = _greeted(s)
    control.line("client", 0.004, "USER anna")
    control.line("server", 0.005, "331 Password required")
    control.line("client", 0.006, "PASS ****")
    control.line("server", 0.007, "230 Logged in")
    control.line("client", 0.010, "PASV")
    pasv = s.listen("server", 0.0105, "data", "127.0.0.1:40001")
    control.line("server", 0.011, "227 Entering Passive Mode (127,0,0,1,156,65)")
    control.line("client", 0.012, "RETR a.bin")
    for role in ("server", "client"):
        s.emit(role, 0.0125, "transfer_start", command="RETR", path="a.bin",
               direction="download", conn=None, control=control.conn[role])
    data = s.connect(0.013, "data", "client", "127.0.0.1:50001", "127.0.0.1:40001", pasv)
    s.close_listener("server", 0.0134, pasv, "data", "127.0.0.1:40001")
    control.line("server", 0.014, "150 Opening data connection")
    data.data("server", 0.015, RETR_SIZES, 0.001, recv_sizes=[32768] * 6 + [10000])
    data.close("server", 0.0190)
    s.emit("server", 0.0191, "transfer_end", command="RETR", path="a.bin",
           direction="download", conn=data.conn["server"], control=control.conn["server"],
           bytes=RETR_BYTES, duration=RETR_DURATION, sha256="ab" * 32, verdict="ok")
    data.eof("client", 0.0192)
    data.close("client", 0.0195)
    s.emit("client", 0.0196, "transfer_end", command="RETR", path="a.bin",
           direction="download", conn=data.conn["client"], control=control.conn["client"],
           bytes=RETR_BYTES, duration=RETR_DURATION, sha256="ab" * 32, verdict="verified")
    control.line("server", 0.020, "226 Transfer complete")
    control.line("client", 0.021, "RETR missing.bin")
    control.line("server", 0.022, "550 No such file")
    _quit(control, 0.030)
    return s


def active_session() -> Script:
    """PORT + STOR up.txt (5000 bytes): the client listens, the server connects."""
    s = Script()
    control = _greeted(s)
    port = s.listen("client", 0.004, "data", "127.0.0.1:50010")
    control.line("client", 0.005, "PORT 127,0,0,1,195,90")
    control.line("server", 0.006, "200 PORT ok")
    control.line("client", 0.007, "STOR up.txt")
    data = s.connect(0.008, "data", "server", "127.0.0.1:50010", "127.0.0.1:2020", port)
    control.line("server", 0.009, "150 Ok to send data")
    data.data("client", 0.010, [4096, 904], 0.001)
    data.close("client", 0.013)
    data.eof("server", 0.0132)
    data.close("server", 0.0135)
    control.line("server", 0.014, "226 Transfer complete")
    control.close("client", 0.020)
    control.eof("server", 0.0202)
    control.close("server", 0.021)
    return s


# Escape sequences a hostile peer (or a hand-edited log) puts in what it sends:
# retitle the terminal, clear it, a C1 CSI, a bidi override, a lone surrogate.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202e\ud800"


def hostile_session() -> Script:
    """A session whose every peer-written text carries terminal escapes."""
    s = Script()
    control = _greeted(s)
    control.line("client", 0.004, f"USER {HOSTILE}anna")
    control.line("server", 0.005, f"530 no such user {HOSTILE}")
    for role in ("server", "client"):
        s.emit(role, 0.006, "transfer_end", command="RETR", path=f"{HOSTILE}.bin",
               direction="download", conn=None, control=control.conn[role], bytes=0,
               duration=0.001, sha256=None, verdict="aborted")
    s.emit("server", 0.007, "error", message=f"bad name {HOSTILE}", conn=None, code=None)
    _quit(control, 0.008)
    return s
