# ftpkit lab: starter code generated from the reference solution by
# `python -m solutions.generate`. Replace each `raise NotImplementedError(...)`
# with your code; lab/README.md says what each exercise asks for.
"""One client's session on the server, from the 220 greeting to the 221 goodbye.

A session owns the control connection. It reads commands with the sans-IO
parser, answers each with a reply, and for RETR, STOR, APPE, LIST, NLST and
MLSD opens a data connection that lives for exactly one transfer.

This module holds the session's state, its loop and the small commands.
The other handlers are inherited: the data connection and the transfers
from transfers.py, the commands on folders and names from treecommands.py.

Which commands exist, what each needs, and which may follow which is not
written here: it is the tables of conversation.py. ``dispatch`` looks the
verb up there, and every reply goes through ``reply``, which tells the
conversation, so the session's state changes in that one place.
"""

from __future__ import annotations

import collections
import logging
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
from .protocol import Code, Command, CommandParser, ConnectionClosed, LineTooLong, MalformedLine, NotUtf8
from .safetext import fit_for_a_reply, printable, reason
from .transfers import TransferCommands
from .treecommands import TreeCommands

log = logging.getLogger("ftpkit.server")

MAX_LOGIN_FAILURES = 3


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


class Session(TransferCommands, TreeCommands):
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
            self.reply(Code.LOCAL_ERROR, f"{cmd.verb}: local error: {reason(err)}.")
        except Exception as bug:
            # Anything else (TypeError, AttributeError, ValueError...) is a bug
            # in the server. It must not pass for a reply the protocol allows:
            # the whole traceback goes to whoever runs the server (stderr), the
            # client learns it was the server's fault, and the session goes on,
            # so one bug does not hide the behaviour of every later command.
            log.exception("bug while serving %s", printable(f"{cmd.verb} {cmd.arg}"))
            trace.event("error", message=f"{cmd.verb}: {type(bug).__name__}: {bug}")
            self.reply(Code.LOCAL_ERROR, f"{cmd.verb}: internal error ({type(bug).__name__}); "
                                         "see the server's log.")

    def reply(self, code: int, text: str) -> None:
        helper.send_reply(self.control, code, fit_for_a_reply(text))
        self.conversation.replied(code)
        if self.conversation.state not in (State.DATA_READY, State.TRANSFERRING):
            # A data connection set up by PASV/PORT serves the one transfer
            # that comes next; once the state says it is gone, so is it.
            self.close_data_end()

    def close_data_end(self) -> None:
        if self.data_end is not None:
            self.data_end.close()
            self.data_end = None

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

