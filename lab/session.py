# ftpkit lab: starter code generated from the reference solution by
# `python -m solutions.generate`. Replace each `raise NotImplementedError(...)`
# with your code; lab/README.md says what each exercise asks for.
"""One client's session on the server, from the 220 greeting to the 221 goodbye.

A session owns the control connection. It reads commands with the sans-IO
parser, answers each with a reply, and for RETR, STOR, APPE, LIST, NLST and
MLSD opens a data connection that lives for exactly one transfer.

Which commands exist, what each needs, and which may follow which is not
written here: it is the tables of conversation.py. ``dispatch`` looks the
verb up there, and every reply goes through ``reply``, which tells the
conversation, so the session's state changes in that one place.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import trace

from . import helper
from .controlwatch import ControlWatch
from .conversation import FEATURES, VERBS, ServerConversation, State
from .datachannel import ConnectingEnd, ListeningEnd
from .faults import Faults
from .filesystem import PathRefused, Root
from .protocol import (MAX_LINE, Code, Command, CommandParser, ConnectionClosed, LineTooLong,
                       MalformedLine, NotUtf8, UnsupportedFamily, format_epsv_reply,
                       format_pasv_reply, parse_eprt_arg, parse_host_port)
from .resume import receive_after, send_file_from
from .treecommands import TreeCommands

log = logging.getLogger("ftpkit.server")

MAX_LOGIN_FAILURES = 3
# How long the control channel must stay quiet, after an upload without ALLO
# ended, before we believe the client is still there (see
# Session.client_still_connected). A dying client's kernel closes its two
# connections back to back, so the two FINs arrive microseconds apart; 10 ms
# is a wide margin. Every live client that sends no ALLO (curl, ftplib, most
# GUI clients) waits this long for its 226, so it must stay short.
CLIENT_GONE_GRACE = 0.01
# ...and the longest we listen for that, however chatty the client: a client
# that keeps sending commands is evidently alive.
CLIENT_GONE_LIMIT = 1.0


@dataclass
class ServerConfig:
    root: Root
    user: str | None = None          # None: anyone may log in (anonymous FTP)
    password: str | None = None
    idle_timeout: float = 300.0      # seconds a control connection may sit between commands
    accept_timeout: float = 30.0     # seconds a data listener waits for its client
    transfer_timeout: float = 60.0   # seconds a data connection may stall
    login_failure_delay: float = 1.0
    read_only: bool = False          # refuse every command that changes the disk
    port_promiscuous: bool = False   # PORT/EPRT to any address (vsftpd's option; for the NAT experiment)
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


class TransferAborted(OSError):
    """The client said ABOR, or went away, while the bytes were moving."""


class Session(TreeCommands):
    def __init__(self, control, config: ServerConfig, stats: ServerStats):
        self.control = control
        self.config = config
        self.stats = stats
        self.parser = CommandParser()
        self.conversation = ServerConversation()    # the state: see conversation.py
        self.pending = collections.deque()          # commands read during a transfer
        self.cwd = "/"
        self.user: str | None = None
        self.login_failures = 0
        self.data_end: ListeningEnd | ConnectingEnd | None = None
        self.announced_size: int | None = None      # ALLO: the size of the next upload
        self.restart_at = 0                         # REST: where the next transfer starts
        self.rename_from = None                     # RNFR: what RNTO renames
        self.epsv_only = False
        self.watch: ControlWatch | None = None      # watches the control channel during a transfer
        self.client_host = control.getpeername()[0]
        # Urgent data (TCP's "out of band" byte, which ftplib's abort() and
        # Telnet's Synch use for the last byte before ABOR) stays in the
        # normal stream, instead of vanishing from it and leaving "ABOR\r".
        control.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)

    @property
    def open(self) -> bool:
        return self.conversation.state is not State.CLOSED

    @open.setter
    def open(self, value: bool) -> None:
        # Hanging up is the one move no reply makes: the client closed, or a
        # handler decided to end the session.
        if not value:
            self.conversation.close()

    # --- the loop ------------------------------------------------------------

    def run(self) -> None:
        """Serve this client until it quits, disconnects or idles out."""
        self.control.settimeout(self.config.idle_timeout)
        try:
            self.reply(Code.READY, "ftpkit server ready.")
            while self.open:
                try:
                    event = self.next_event()
                except TimeoutError:
                    self.reply(Code.SERVICE_UNAVAILABLE, "Timeout: closing control connection.")
                    break
                self.handle(event)
        except OSError as err:
            trace.event("error", message=f"control connection lost: {err}")
        finally:
            self.close_data_end()
            self.control.close()

    def next_event(self):
        """The next event: first any read while a transfer ran, then from the socket.

        The idle timeout runs from here to the end of the next whole command:
        a client sending a byte every few seconds gains nothing (slowloris).
        """
        if self.pending:
            return self.pending.popleft()
        event = helper.receive_event(_Deadline(self.control, self.config.idle_timeout), self.parser)
        self.control.settimeout(self.config.idle_timeout)     # for the replies' sends
        return event

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
        rule = VERBS.get(cmd.verb)
        if rule is None:
            self.reply(Code.NOT_IMPLEMENTED, f"{cmd.verb}: command not implemented.")
            return
        refusal = self.conversation.received(cmd.verb)
        if refusal is not None:
            self.reply(refusal.code, refusal.text)
        elif rule.needs_arg and not cmd.arg:
            self.reply(Code.BAD_ARGUMENTS, f"{cmd.verb} needs an argument.")
        elif rule.writes and self.config.read_only:
            self.reply(Code.FILE_UNAVAILABLE, f"{cmd.verb}: this server is read-only.")
        else:
            self.carry_out(cmd, getattr(self, rule.handler))

    def carry_out(self, cmd: Command, handler: Callable[[str], None]) -> None:
        try:
            handler(cmd.arg)
        except PathRefused as refused:
            self.reply(refused.code, str(refused))
        except NotImplementedError as missing:
            # The lab's starter code: a handler not written yet answers 502
            # and the server keeps serving the other commands.
            exercise, _, hint = str(missing).partition(": ")
            self.reply(Code.NOT_IMPLEMENTED,
                       f"{exercise}: not implemented yet" + (f" ({hint})" if hint else ""))
        except OSError as err:
            # The disk said no (permission denied, a file deleted meanwhile):
            # the command failed, not the server. 451: try again later.
            trace.event("error", message=f"{cmd.verb}: {err}")
            self.reply(Code.LOCAL_ERROR, f"{cmd.verb}: local error: {_reason(err)}.")
        except Exception as bug:
            # Anything else (TypeError, AttributeError, ValueError...) is a bug
            # in the server. It must not pass for a reply the protocol allows:
            # the whole traceback goes to whoever runs the server (stderr), the
            # client learns it was the server's fault, and the session goes on,
            # so one bug does not hide the behaviour of every later command.
            log.exception("bug while serving %s", _printable(f"{cmd.verb} {cmd.arg}"))
            trace.event("error", message=f"{cmd.verb}: {type(bug).__name__}: {bug}")
            self.reply(Code.LOCAL_ERROR, f"{cmd.verb}: internal error ({type(bug).__name__}); "
                                         "see the server's log.")

    def reply(self, code: int, text: str) -> None:
        helper.send_reply(self.control, code, _fit_for_a_reply(text))
        self.conversation.replied(code)
        if self.conversation.state not in (State.DATA_READY, State.TRANSFERRING):
            # A data connection set up by PASV/PORT serves the one transfer
            # that comes next; once the state says it is gone, so is it.
            self.close_data_end()

    # --- login and session state -------------------------------------------

    def user_(self, name: str) -> None:
        # Always ask for a password, whether or not the user exists, so a
        # stranger cannot learn user names by trying them (RFC 2577).
        self.user = name
        self.reply(Code.NEED_PASSWORD, "Please specify the password.")

    def pass_(self, password: str) -> None:
        if self.conversation.logged_in:
            self.reply(Code.LOGGED_IN, "Already logged in.")
            return
        anyone = self.config.user is None
        if anyone or (self.user == self.config.user and password == self.config.password):
            self.reply(Code.LOGGED_IN, "Login successful.")
            return
        self.login_failures += 1
        self.user = None
        # A delay on every failure makes guessing passwords slow (RFC 2577).
        time.sleep(self.config.login_failure_delay)
        self.reply(Code.NOT_LOGGED_IN, "Login incorrect.")
        if self.login_failures >= MAX_LOGIN_FAILURES:
            self.reply(Code.SERVICE_UNAVAILABLE, "Too many failed logins: goodbye.")   # 421 closes

    def quit_(self, _: str) -> None:
        self.reply(Code.GOODBYE, "Goodbye.")        # 221: the conversation is CLOSED

    def noop(self, _: str) -> None:
        self.reply(Code.OK, "NOOP ok.")

    def syst(self, _: str) -> None:
        self.reply(Code.SYSTEM_TYPE, "UNIX Type: L8")

    def feat(self, _: str) -> None:
        # RFC 2389: one feature per line, each indented by a space.
        self.reply(Code.FEATURES, "\n".join(["Features:", *(f" {f}" for f in FEATURES), "End"]))

    def help_(self, _: str) -> None:
        verbs = " ".join(sorted(VERBS))
        self.reply(Code.HELP, f"The following commands are recognized:\n {verbs}\nHelp OK.")

    def opts(self, arg: str) -> None:
        option, _, value = arg.upper().partition(" ")
        if option == "UTF8":
            self.reply(Code.OK, "Always in UTF8 mode.")
        elif option == "HASH" and value in ("", "SHA-256"):
            self.reply(Code.OK, "SHA-256")
        elif option == "MLST":
            # RFC 3659 section 7.9: the client picks facts; we always send all four.
            self.reply(Code.OK, "MLST OPTS type;size;modify;perm;")
        else:
            self.reply(Code.BAD_ARGUMENTS, f"Option not understood: {arg}")

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

    def mode(self, arg: str) -> None:
        ok = arg.upper() == "S"
        self.reply(Code.OK if ok else Code.BAD_PARAMETER, "Mode set to S." if ok else "Only stream mode (S).")

    def stru(self, arg: str) -> None:
        ok = arg.upper() == "F"
        self.reply(Code.OK if ok else Code.BAD_PARAMETER, "Structure set to F." if ok else "Only file structure (F).")

    def allo(self, arg: str) -> None:
        # The size a client announces before STOR: an upload that ends short of
        # it was broken off, and is discarded instead of kept (see STOR).
        self.announced_size = int(arg.split()[0]) if arg.split() and arg.split()[0].isdigit() else None
        self.reply(Code.OK, "ALLO ok.")

    def rest(self, arg: str) -> None:
        # RFC 3659 section 5: the next RETR, STOR or APPE starts at this byte
        # (STREAM mode: the offset is a plain byte count).
        if not arg.isdigit():
            self.reply(Code.BAD_ARGUMENTS, "REST needs a byte offset: REST 1024.")
            return
        self.restart_at = int(arg)
        self.reply(Code.PENDING, f"Restarting at {self.restart_at}. Send STOR or RETR to initiate transfer.")

    # --- directories -----------------------------------------------------------

    def pwd(self, _: str) -> None:
        quoted = self.cwd.replace('"', '""')   # RFC 959 appendix II: double any quote
        self.reply(Code.PATH_CREATED, f'"{quoted}" is the current directory.')

    def cwd_(self, path: str) -> None:
        target = self.config.root.resolve(self.cwd, path)
        if not target.real.is_dir():
            self.reply(Code.FILE_UNAVAILABLE, f"{path}: no such directory.")
            return
        self.cwd = target.virtual
        self.reply(Code.FILE_ACTION_OK, f'Directory changed to "{self.cwd}".')

    def cdup(self, _: str) -> None:
        if self.cwd != "/":
            self.cwd = self.config.root.resolve(self.cwd, "..").virtual
        self.reply(Code.FILE_ACTION_OK, f'Directory changed to "{self.cwd}".')

    # --- setting up the data connection ---------------------------------------

    def pasv(self, _: str) -> None:
        host = self.control.getsockname()[0]
        if self.epsv_only or ":" in host:
            self.reply(Code.BAD_SEQUENCE if self.epsv_only else Code.NETWORK_PROTOCOL_NOT_SUPPORTED,
                       "Use EPSV.")
            return
        raise NotImplementedError("ex2: open a listening end on the control connection's address, announce it with 227")

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

    def port(self, arg: str) -> None:
        raise NotImplementedError('ex6: parse h1,h2,h3,h4,p1,p2; 501 if malformed; then connect_for_data')

    def eprt(self, arg: str) -> None:
        raise NotImplementedError('ex6: parse |family|address|port|; 522 for an unknown family, 501 if malformed')

    def connect_for_data(self, address: tuple[str, int]) -> None:
        verb = self.conversation.verb            # PORT or EPRT: the replies name the one sent
        if self.epsv_only:
            self.reply(Code.BAD_SEQUENCE, "EPSV ALL is in effect: use EPSV.")
            return
        host, port = address
        if ipaddress.ip_address(host).is_unspecified:
            # lftp over IPv6 sends "EPRT |2|::|port|": like vsftpd, read the
            # unspecified address as "my own address", the only one allowed.
            host = self.client_host
        # RFC 2577: connecting anywhere but back to the client, or to a
        # privileged port, would let a client use the server to attack a third
        # host (the "bounce attack").
        if (host != self.client_host and not self.config.port_promiscuous) or port < 1024:
            self.reply(Code.BAD_ARGUMENTS, f"Illegal {verb} command: only to your own address, port 1024 or above.")
            return
        self.close_data_end()
        self.data_end = self.config.faults.wrap_end(
            ConnectingEnd((host, port), self.config.transfer_timeout, source=self.default_data_port()))
        self.reply(Code.OK, f"{verb} command successful. Consider using PASV.")

    def default_data_port(self) -> tuple[str, int] | None:
        """RFC 959's default server data port: one below the control port (L-1).

        Active-mode data connections come from there, as from vsftpd on port
        20, so Wireshark can tell which control connection a data connection
        belongs to. ConnectingEnd falls back to any port when L-1 is taken
        (two transfers at once, or another program).
        """
        host, port = self.control.getsockname()[:2]
        return (host, port - 1) if port > 1 else None

    def close_data_end(self) -> None:
        if self.data_end is not None:
            self.data_end.close()
            self.data_end = None

    # --- transfers -------------------------------------------------------------

    def retr(self, path: str) -> None:
        target = self.config.root.resolve(self.cwd, path)
        offset, self.restart_at = self.restart_at, 0
        if not target.real.is_file():
            self.close_data_end()
            self.reply(Code.FILE_UNAVAILABLE, f"{path}: no such file.")
            return
        size = target.real.stat().st_size
        if offset > size:
            raise PathRefused(Code.INVALID_RESTART, f"REST {offset} is beyond the end of {path} ({size} bytes).")
        if offset:
            send = lambda data: send_file_from(data, target.real, offset)       # noqa: E731
        else:
            send = lambda data: helper.send_file(data, target.real)             # noqa: E731
        self.transfer("RETR", target.virtual, "download",
                      f"Opening BINARY mode data connection for {path} ({size - offset} bytes).",
                      self.watched(send))

    def stor(self, path: str) -> None:
        offset, self.restart_at = self.restart_at, 0
        self.receive_upload("STOR", path, keep=offset)

    def appe(self, path: str) -> None:
        self.restart_at = 0
        self.receive_upload("APPE", path, keep=None)

    def receive_upload(self, verb: str, path: str, keep: int | None) -> None:
        """STOR (keep the first ``keep`` bytes of the old file: REST), or APPE
        (keep=None: keep all of it). Either way the bytes go to a hidden
        partial copy that replaces the file only once the upload is whole, so
        a broken upload never leaves a truncated file under the real name."""
        target = self.config.root.resolve(self.cwd, path)
        exists = target.real.exists()
        if target.real.is_dir() or not target.real.parent.is_dir() or target.virtual == "/" \
                or (exists and not target.real.is_file()):
            self.close_data_end()
            self.reply(Code.NAME_NOT_ALLOWED, f"{path}: cannot store a file there.")
            return
        old_size = target.real.stat().st_size if exists else 0
        keep = old_size if keep is None else keep
        if keep > old_size:
            raise PathRefused(Code.INVALID_RESTART, f"REST {keep} is beyond the end of {path} ({old_size} bytes).")
        expected, self.announced_size = self.announced_size, None
        still_wanted = self.client_still_connected if expected is None else None
        if keep:
            receive = lambda data: receive_after(data, target.real, keep, expected, still_wanted)  # noqa: E731
        else:
            receive = lambda data: helper.receive_file(                                        # noqa: E731
                data, target.real, expected_size=expected, still_wanted=still_wanted)
        self.transfer(verb, target.virtual, "upload", f"Ok to send data for {path}.", self.watched(receive))

    def watched(self, move_bytes: Callable) -> Callable:
        """``move_bytes`` with the control channel watched while it runs, so an
        ABOR, or the client going away, stops the transfer (controlwatch.py)."""
        def move_watching(data):
            self.watch = ControlWatch(self.control, self.parser, data).start()
            try:
                moved = move_bytes(data)
            except OSError:
                if self.watch.stopped_by:
                    raise TransferAborted(f"stopped: {self.watch.stopped_by}") from None
                raise
            finally:
                watch, self.watch = self.watch, None
                watch.stop()
                self.pending.extend(watch.events)     # answered after this transfer's reply
            if watch.stopped_by:
                raise TransferAborted(f"stopped: {watch.stopped_by}")
            return moved
        return move_watching

    def list_(self, path: str) -> None:
        self.send_listing("LIST", path, names_only=False)

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
        refusal = self.conversation.data_ready()
        if refusal is not None:
            self.reply(refusal.code, refusal.text)
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
            log.warning("%s %s for %s aborted", verb, _printable(path), self.client_host)

    def client_still_connected(self) -> bool:
        """After an upload's data connection closed: is the client still there?

        In stream mode the close is the only end-of-file mark, so a client
        killed mid-upload looks like one that finished: both send a FIN. What
        differs is the control connection: a dead client's closes too, within
        moments of the data connection. So read the control channel until it
        has been quiet for a moment, or says the client closed. Not just one
        read: a client that sent a NOOP (a keep-alive) just before it died
        has the NOOP there first, and the close only behind it. Whatever
        commands arrive meanwhile are answered later, in order, as usual.
        Clients that announce the size with ALLO (ours does) never need this.
        """
        if self.watch is not None:
            self.watch.stop()                     # from here on, this thread reads the control channel
            if self.watch.stopped_by:
                return False
        deadline = time.monotonic() + CLIENT_GONE_LIMIT
        poller = select.poll()                    # not select(): descriptors above 1023 exist
        poller.register(self.control, select.POLLIN)
        while not self.parser.closed and time.monotonic() < deadline:
            if not poller.poll(CLIENT_GONE_GRACE * 1000):
                return True                       # quiet: a live client waiting for its 226
            try:
                self.parser.receive_data(self.control.recv(helper.CONTROL_READ_SIZE))
            except OSError:
                return False
        return not self.parser.closed

    # --- integrity ---------------------------------------------------------------

    def size(self, path: str) -> None:
        target = self.config.root.resolve(self.cwd, path)
        if not target.real.is_file():
            self.reply(Code.FILE_UNAVAILABLE, f"{path}: no such file.")
            return
        self.reply(Code.FILE_STATUS, str(target.real.stat().st_size))

    def hash_(self, path: str) -> None:
        """draft-bryan-ftpext-hash: ``213 SHA-256 0-N <hex> <path>``, where the
        byte range is start-end with end exclusive, so the whole of an N-byte
        file is 0-N (and an empty file 0-0)."""
        target = self.config.root.resolve(self.cwd, path)
        if not target.real.is_file():
            self.reply(Code.FILE_UNAVAILABLE, f"{path}: no such file.")
            return
        raise NotImplementedError('ex4: hash the whole file and reply 213 SHA-256 0-<size> <hex> <path>')

    # --- machine listings and status (RFC 3659, RFC 959 STAT) ---------------------

    def mlsd(self, path: str) -> None:
        lines = self.config.root.machine_listing(self.cwd, path or ".", not self.config.read_only)
        self.transfer("MLSD", self.config.root.resolve(self.cwd, path or ".").virtual, "listing",
                      "Here comes the machine listing.", lambda data: helper.send_bytes(data, lines))

    def abor(self, _: str) -> None:
        # During a transfer the ControlWatch saw this ABOR, stopped the
        # transfer and had it answered 426; this 226 comes after that.
        # Between transfers there is nothing to stop, but a data connection
        # set up by PASV or PORT is dropped: 225.
        if self.data_end is not None:
            self.reply(Code.NO_TRANSFER, "ABOR: no transfer in progress; data connection closed.")
        else:
            self.reply(Code.TRANSFER_COMPLETE, "ABOR command successful.")


# Control characters a client may put in a name (anything below a space,
# DEL and the C1 controls), each shown as "?" when the name is echoed in a reply.
_CONTROL_CHARACTERS = {code: "?" for code in [*range(0x20), *range(0x7F, 0xA0)]}


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


def _printable(text: str) -> str:
    """Text a client sent, fit for the server's own terminal: control
    characters (ESC above all) shown as escapes, never sent to the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Deadline:
    """The control socket as helper.receive_event sees it: every recv times
    out at one deadline, set when we start waiting for a command. Without
    it each byte would restart the idle timeout, and a client sending one
    byte every few seconds would hold its connection forever (slowloris)."""

    def __init__(self, sock, seconds: float):
        self.sock = sock
        self.deadline = time.monotonic() + seconds

    def recv(self, size: int) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no whole command within the idle timeout")
        self.sock.settimeout(remaining)
        return self.sock.recv(size)


def _reason(err: OSError) -> str:
    if isinstance(err, TimeoutError) or isinstance(err, socket.timeout):
        return "timed out"
    return err.strerror or str(err) or type(err).__name__
