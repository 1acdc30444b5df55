# ftpkit lab: starter code generated from the reference solution by
# `python -m solutions.generate`. Replace each `raise NotImplementedError(...)`
# with your code; lab/README.md says what each exercise asks for.
"""One client's session on the server, from the 220 greeting to the 221 goodbye.

A session owns the control connection. It reads commands with the sans-IO
parser, answers each with a reply, and for RETR, STOR, LIST and NLST opens a
data connection that lives for exactly one transfer. Handlers are plain
methods registered by verb in one table, so the protocol the server speaks
can be read off that table.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import trace

from . import helper
from .datachannel import ConnectingEnd, ListeningEnd
from .faults import Faults
from .filesystem import PathRefused, Root
from .protocol import (MAX_LINE, Code, Command, CommandParser, ConnectionClosed, LineTooLong,
                       MalformedLine, NotUtf8, UnsupportedFamily, format_epsv_reply,
                       format_pasv_reply, parse_eprt_arg, parse_host_port)

log = logging.getLogger("ftpkit.server")

FEATURES = ["EPRT", "EPSV", "HASH SHA-256*", "PASV", "SIZE", "UTF8"]
MAX_LOGIN_FAILURES = 3
# How long to watch the control channel, after an upload without ALLO ended,
# for a sign that the client died (see Session.client_still_connected). A
# dying client's kernel closes its two connections back to back, so the two
# FINs arrive microseconds apart; 10 ms is a wide margin. Every live client
# that sends no ALLO (curl, ftplib, most GUI clients) waits this long for its
# 226, so it must stay short.
CLIENT_GONE_GRACE = 0.01


@dataclass
class ServerConfig:
    root: Root
    user: str | None = None          # None: anyone may log in (anonymous FTP)
    password: str | None = None
    idle_timeout: float = 300.0      # seconds a control connection may sit idle
    accept_timeout: float = 30.0     # seconds a data listener waits for its client
    transfer_timeout: float = 60.0   # seconds a data connection may stall
    login_failure_delay: float = 1.0
    faults: Faults = field(default_factory=Faults)   # none, unless asked for (faults.py)


@dataclass
class ServerStats:
    """Counters shared by every session thread, so every change takes the lock."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    sessions_open: int = 0
    sessions_total: int = 0
    transfers: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def add(self, **amounts: int) -> None:
        # ex5: add each amount to its counter, holding the lock.
        # This starter version is fine for one client at a time; with a thread per
        # client, two sessions can interleave here and an update is lost.
        for name, amount in amounts.items():
            setattr(self, name, getattr(self, name) + amount)


# The command table: verb -> (handler, needs an argument, needs a login).
COMMANDS: dict[str, tuple[Callable, bool, bool]] = {}


def command(verb: str, *, needs_arg: bool = False, needs_login: bool = True):
    def register(handler):
        COMMANDS[verb] = (handler, needs_arg, needs_login)
        return handler
    return register


class Session:
    def __init__(self, control, config: ServerConfig, stats: ServerStats):
        self.control = control
        self.config = config
        self.stats = stats
        self.parser = CommandParser()
        self.cwd = "/"
        self.user: str | None = None
        self.logged_in = False
        self.login_failures = 0
        self.data_end: ListeningEnd | ConnectingEnd | None = None
        self.announced_size: int | None = None
        self.epsv_only = False
        self.client_host = control.getpeername()[0]
        self.open = True

    # --- the loop ------------------------------------------------------------

    def run(self) -> None:
        """Serve this client until it quits, disconnects or idles out."""
        self.control.settimeout(self.config.idle_timeout)
        try:
            self.reply(Code.READY, "ftpkit server ready.")
            while self.open:
                try:
                    event = helper.receive_event(self.control, self.parser)
                except TimeoutError:
                    self.reply(Code.SERVICE_UNAVAILABLE, "Timeout: closing control connection.")
                    break
                self.handle(event)
        except OSError as err:
            trace.event("error", message=f"control connection lost: {err}")
        finally:
            self.close_data_end()
            self.control.close()

    def handle(self, event) -> None:
        if isinstance(event, ConnectionClosed):
            self.open = False
        elif isinstance(event, LineTooLong):
            self.reply(Code.SYNTAX_ERROR, "Command line too long.")
        elif isinstance(event, NotUtf8):
            self.reply(Code.BAD_ARGUMENTS, "Command is not valid UTF-8.")
        elif isinstance(event, MalformedLine):
            self.reply(Code.SYNTAX_ERROR, "Syntax error, command unrecognized.")
        elif isinstance(event, Command):
            self.dispatch(event)

    def dispatch(self, cmd: Command) -> None:
        entry = COMMANDS.get(cmd.verb)
        if entry is None:
            self.reply(Code.NOT_IMPLEMENTED, f"{cmd.verb}: command not implemented.")
            return
        handler, needs_arg, needs_login = entry
        if needs_login and not self.logged_in:
            self.reply(Code.NOT_LOGGED_IN, "Please log in with USER and PASS.")
        elif needs_arg and not cmd.arg:
            self.reply(Code.BAD_ARGUMENTS, f"{cmd.verb} needs an argument.")
        else:
            try:
                handler(self, cmd.arg)
            except PathRefused as refused:
                self.reply(refused.code, str(refused))
            except NotImplementedError as missing:
                # The lab's starter code: a handler not written yet answers 502
                # and the server keeps serving the other commands.
                exercise, _, hint = str(missing).partition(": ")
                self.reply(Code.NOT_IMPLEMENTED,
                           f"{exercise}: not implemented yet" + (f" ({hint})" if hint else ""))
            except (OSError, ValueError, LookupError, TypeError, AttributeError) as bug:
                # A handler that fails in an unforeseen way costs this one
                # command, not the session: 451 says "local error", try again.
                trace.event("error", message=f"{cmd.verb}: {type(bug).__name__}: {bug}")
                self.reply(Code.LOCAL_ERROR, f"{cmd.verb}: local error: {type(bug).__name__}.")

    def reply(self, code: int, text: str) -> None:
        helper.send_reply(self.control, code, _fit_for_a_reply(text))

    # --- login and session state -------------------------------------------

    @command("USER", needs_arg=True, needs_login=False)
    def user_(self, name: str) -> None:
        # Always ask for a password, whether or not the user exists, so a
        # stranger cannot learn user names by trying them (RFC 2577).
        self.user, self.logged_in = name, False
        self.reply(Code.NEED_PASSWORD, "Please specify the password.")

    @command("PASS", needs_login=False)
    def pass_(self, password: str) -> None:
        if self.logged_in:
            self.reply(Code.LOGGED_IN, "Already logged in.")
            return
        if self.user is None:
            self.reply(Code.BAD_SEQUENCE, "Login with USER first.")
            return
        anyone = self.config.user is None
        if anyone or (self.user == self.config.user and password == self.config.password):
            self.logged_in = True
            self.reply(Code.LOGGED_IN, "Login successful.")
            return
        self.login_failures += 1
        self.user = None
        # A delay on every failure makes guessing passwords slow (RFC 2577).
        time.sleep(self.config.login_failure_delay)
        self.reply(Code.NOT_LOGGED_IN, "Login incorrect.")
        if self.login_failures >= MAX_LOGIN_FAILURES:
            self.reply(Code.SERVICE_UNAVAILABLE, "Too many failed logins: goodbye.")
            self.open = False

    @command("QUIT", needs_login=False)
    def quit_(self, _: str) -> None:
        self.reply(Code.GOODBYE, "Goodbye.")
        self.open = False

    @command("NOOP", needs_login=False)
    def noop(self, _: str) -> None:
        self.reply(Code.OK, "NOOP ok.")

    @command("SYST", needs_login=False)
    def syst(self, _: str) -> None:
        self.reply(Code.SYSTEM_TYPE, "UNIX Type: L8")

    @command("FEAT", needs_login=False)
    def feat(self, _: str) -> None:
        # RFC 2389: one feature per line, each indented by a space.
        self.reply(Code.FEATURES, "\n".join(["Features:", *(f" {f}" for f in FEATURES), "End"]))

    @command("HELP", needs_login=False)
    def help_(self, _: str) -> None:
        verbs = " ".join(sorted(COMMANDS))
        self.reply(Code.HELP, f"The following commands are recognized:\n {verbs}\nHelp OK.")

    @command("OPTS", needs_arg=True, needs_login=False)
    def opts(self, arg: str) -> None:
        option, _, value = arg.upper().partition(" ")
        if option == "UTF8":
            self.reply(Code.OK, "Always in UTF8 mode.")
        elif option == "HASH" and value in ("", "SHA-256"):
            self.reply(Code.OK, "SHA-256")
        else:
            self.reply(Code.BAD_ARGUMENTS, f"Option not understood: {arg}")

    @command("TYPE", needs_arg=True)
    def type_(self, arg: str) -> None:
        # Files go byte for byte in either type; like vsftpd, ASCII type does
        # not rewrite line ends, so a download is always the file as stored.
        kind = arg.upper().split()
        if kind and kind[0] == "I" or kind == ["L", "8"]:
            self.reply(Code.OK, "Switching to Binary mode.")
        elif kind and kind[0] == "A" and kind[1:] in ([], ["N"]):
            self.reply(Code.OK, "Switching to ASCII mode.")
        else:
            self.reply(Code.BAD_PARAMETER, f"Type not supported: {arg}")

    @command("MODE", needs_arg=True)
    def mode(self, arg: str) -> None:
        ok = arg.upper() == "S"
        self.reply(Code.OK if ok else Code.BAD_PARAMETER, "Mode set to S." if ok else "Only stream mode (S).")

    @command("STRU", needs_arg=True)
    def stru(self, arg: str) -> None:
        ok = arg.upper() == "F"
        self.reply(Code.OK if ok else Code.BAD_PARAMETER, "Structure set to F." if ok else "Only file structure (F).")

    @command("ALLO")
    def allo(self, arg: str) -> None:
        # The size a client announces before STOR: an upload that ends short of
        # it was broken off, and is discarded instead of kept (see STOR).
        self.announced_size = int(arg.split()[0]) if arg.split() and arg.split()[0].isdigit() else None
        self.reply(Code.OK, "ALLO ok.")

    # --- directories -----------------------------------------------------------

    @command("PWD")
    def pwd(self, _: str) -> None:
        quoted = self.cwd.replace('"', '""')   # RFC 959 appendix II: double any quote
        self.reply(Code.PATH_CREATED, f'"{quoted}" is the current directory.')

    @command("CWD", needs_arg=True)
    def cwd_(self, path: str) -> None:
        target = self.config.root.resolve(self.cwd, path)
        if not target.real.is_dir():
            self.reply(Code.FILE_UNAVAILABLE, f"{path}: no such directory.")
            return
        self.cwd = target.virtual
        self.reply(Code.FILE_ACTION_OK, f'Directory changed to "{self.cwd}".')

    @command("CDUP")
    def cdup(self, _: str) -> None:
        if self.cwd != "/":
            self.cwd = self.config.root.resolve(self.cwd, "..").virtual
        self.reply(Code.FILE_ACTION_OK, f'Directory changed to "{self.cwd}".')

    # --- setting up the data connection ---------------------------------------

    @command("PASV")
    def pasv(self, _: str) -> None:
        host = self.control.getsockname()[0]
        if self.epsv_only or ":" in host:
            self.reply(Code.BAD_SEQUENCE if self.epsv_only else Code.NETWORK_PROTOCOL_NOT_SUPPORTED,
                       "Use EPSV.")
            return
        raise NotImplementedError("ex2: open a listening end on the control connection's address, announce it with 227")

    @command("EPSV")
    def epsv(self, arg: str) -> None:
        if arg.upper() == "ALL":
            self.epsv_only = True        # RFC 2428: from now on, only EPSV
            self.reply(Code.OK, "EPSV ALL ok.")
            return
        if arg and arg not in ("1", "2"):
            self.reply(Code.NETWORK_PROTOCOL_NOT_SUPPORTED, "Network protocol not supported, use (1,2)")
            return
        raise NotImplementedError('ex2: like PASV, but announce only the port: 229 (|||port|)')

    def listen_for_data(self) -> None:
        """Open a fresh data listener; the 227/229 reply goes out only after this."""
        self.close_data_end()
        self.data_end = self.config.faults.wrap_end(
            ListeningEnd(self.control.getsockname()[0],
                         self.config.accept_timeout, self.config.transfer_timeout,
                         allowed_peer=self.client_host))

    @command("PORT", needs_arg=True)
    def port(self, arg: str) -> None:
        raise NotImplementedError('ex6: parse h1,h2,h3,h4,p1,p2; 501 if malformed; then connect_for_data')

    @command("EPRT", needs_arg=True)
    def eprt(self, arg: str) -> None:
        raise NotImplementedError('ex6: parse |family|address|port|; 522 for an unknown family, 501 if malformed')

    def connect_for_data(self, address: tuple[str, int]) -> None:
        if self.epsv_only:
            self.reply(Code.BAD_SEQUENCE, "EPSV ALL is in effect: use EPSV.")
            return
        # RFC 2577: connecting anywhere but back to the client, or to a
        # privileged port, would let a client use the server to attack a third
        # host (the "bounce attack").
        if address[0] != self.client_host or address[1] < 1024:
            self.reply(Code.BAD_ARGUMENTS, "Illegal PORT command: only to your own address, port 1024 or above.")
            return
        self.close_data_end()
        self.data_end = self.config.faults.wrap_end(ConnectingEnd(address, self.config.transfer_timeout))
        self.reply(Code.OK, "PORT command successful. Consider using PASV.")

    def close_data_end(self) -> None:
        if self.data_end is not None:
            self.data_end.close()
            self.data_end = None

    # --- transfers -------------------------------------------------------------

    @command("RETR", needs_arg=True)
    def retr(self, path: str) -> None:
        target = self.config.root.resolve(self.cwd, path)
        if not target.real.is_file():
            self.close_data_end()
            self.reply(Code.FILE_UNAVAILABLE, f"{path}: no such file.")
            return
        size = target.real.stat().st_size
        self.transfer("RETR", target.virtual, "download",
                      f"Opening BINARY mode data connection for {path} ({size} bytes).",
                      lambda data: helper.send_file(data, target.real))

    @command("STOR", needs_arg=True)
    def stor(self, path: str) -> None:
        target = self.config.root.resolve(self.cwd, path)
        if target.real.is_dir() or not target.real.parent.is_dir() or target.virtual == "/":
            self.close_data_end()
            self.reply(Code.NAME_NOT_ALLOWED, f"{path}: cannot store a file there.")
            return
        expected, self.announced_size = self.announced_size, None
        self.transfer("STOR", target.virtual, "upload", f"Ok to send data for {path}.",
                      lambda data: helper.receive_file(
                          data, target.real, expected_size=expected,
                          still_wanted=self.client_still_connected if expected is None else None))

    @command("LIST")
    def list_(self, path: str) -> None:
        self.send_listing("LIST", path, names_only=False)

    @command("NLST")
    def nlst(self, path: str) -> None:
        self.send_listing("NLST", path, names_only=True)

    def send_listing(self, verb: str, path: str, names_only: bool) -> None:
        # "ls -l" habits: clients often send options such as "-la"; ignore them.
        path = " ".join(word for word in path.split(" ") if not word.startswith("-"))
        raise NotImplementedError('ex3: build the listing (550 if missing), then send it over a data connection')

    def transfer(self, verb: str, path: str, direction: str, opening: str,
                 move_bytes: Callable) -> None:
        """The shape of every transfer: open the data connection, 150, move the
        bytes, close the data connection, 226. A data connection carries one
        file; closing it is what tells the receiver the file has ended."""
        if self.data_end is None:
            self.reply(Code.CANNOT_OPEN_DATA, "Use PORT, PASV or EPSV first.")
            return
        data_end, self.data_end = self.data_end, None
        started = time.monotonic()
        trace.event("transfer_start", command=verb, path=path, direction=direction,
                    control=getattr(self.control, "conn", None))
        raise NotImplementedError('ex3: open the data connection (425 on failure), 150, move the bytes, close, 226 (426 if broken)')
        self._traced_end(verb, path, direction, data, moved, started, "ok")

    def _traced_end(self, verb, path, direction, data, moved, started, verdict) -> None:
        trace.event("transfer_end", command=verb, path=path, direction=direction,
                    conn=getattr(data, "conn", None), control=getattr(self.control, "conn", None),
                    bytes=moved, duration=round(time.monotonic() - started, 6), sha256=None,
                    verdict=verdict)
        if verdict == "aborted":
            # Whoever runs the server hears of it too: the client may be gone,
            # and with it the only one who saw the 425/426/452.
            log.warning("%s %s for %s aborted", verb, path, self.client_host)

    def client_still_connected(self) -> bool:
        """After an upload's data connection closed: is the client still there?

        In stream mode the close is the only end-of-file mark, so a client
        killed mid-upload looks like one that finished: both send a FIN. What
        differs is the control connection: a dead client's closes too, within
        moments of the data connection. A live client sends nothing there
        while it waits for our 226. So watch the control channel briefly: if
        it says the client closed, the upload was broken off. Clients that
        announce the size with ALLO (ours does) never need this wait.
        """
        readable, _, _ = select.select([self.control], [], [], CLIENT_GONE_GRACE)
        if readable:
            try:
                self.parser.receive_data(self.control.recv(helper.CONTROL_READ_SIZE))
            except OSError:
                return False
        return not self.parser.closed

    # --- integrity ---------------------------------------------------------------

    @command("SIZE", needs_arg=True)
    def size(self, path: str) -> None:
        target = self.config.root.resolve(self.cwd, path)
        if not target.real.is_file():
            self.reply(Code.FILE_UNAVAILABLE, f"{path}: no such file.")
            return
        self.reply(Code.FILE_STATUS, str(target.real.stat().st_size))

    @command("HASH", needs_arg=True)
    def hash_(self, path: str) -> None:
        """draft-bryan-ftpext-hash: ``213 SHA-256 0-N <hex> <path>``, where the
        byte range is start-end with end exclusive, so the whole of an N-byte
        file is 0-N (and an empty file 0-0)."""
        target = self.config.root.resolve(self.cwd, path)
        if not target.real.is_file():
            self.reply(Code.FILE_UNAVAILABLE, f"{path}: no such file.")
            return
        raise NotImplementedError('ex4: hash the whole file and reply 213 SHA-256 0-<size> <hex> <path>')


# Control characters a client may put in a name (anything below a space, and
# DEL), each to be shown as "?" when the name is echoed in a reply.
_CONTROL_CHARACTERS = {code: "?" for code in [*range(0x20), 0x7F]}


def _fit_for_a_reply(text: str) -> str:
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


def _reason(err: OSError) -> str:
    if isinstance(err, TimeoutError) or isinstance(err, socket.timeout):
        return "timed out"
    return err.strerror or str(err) or type(err).__name__
