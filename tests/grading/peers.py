"""The peers the autograder tests the student's code with: the student's
server started as a process (in the sandbox), the reference server (the
kit's solutions, or pyftpdlib in a student release), Python's ftplib, the
reference client, and a raw control connection ("probe") that can split
and pipeline commands. Every one of them traces or logs what it did into
the test's steps (harness.Steps), so a failing test shows it.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import re
import select
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from trace.serverprocess import ServerFailedToStart, ServerProcess

from . import watch
from .harness import IO_TIMEOUT, REPO_ROOT, GradingFailure, Steps, Trace, expect, reference_available


# --- processes ------------------------------------------------------------------------

class Process(ServerProcess):
    """A server process started as ``python -m <package>.server``: the student's
    in the sandbox (``sandbox``), the reference forked by the grader's own
    fork server (``launcher``). Either way it traces to a file of the test.
    Waiting until it listens, its output and its stop are the kit's one
    launcher's (trace/serverprocess.py); only the start is the grader's."""

    def __init__(self, label: str, package: str, env: dict | None, root: Path, workdir: Path,
                 steps: Steps, *extra: str, sandbox=None, launcher=None):
        self.label = label
        self.trace_path = workdir / f"{package}-server-{id(self)}.log"
        arguments = ["--root", str(root), *extra, "--trace", str(self.trace_path), "0"]
        steps.trace(label, self.trace_path)

        def spawn(command, cwd, env, out, err):
            steps.log(label, Path(err.name))
            if sandbox is not None:
                return sandbox.start(sandbox.python(f"{package}.server", arguments), cwd, out, err)
            with open(os.devnull, "rb") as devnull:
                return launcher.start(["-m", f"{package}.server", *arguments], cwd, env,
                                      {0: devnull.fileno(), 1: out.fileno(), 2: err.fileno()}, path=[REPO_ROOT])

        try:
            super().__init__(f"{package}-server", [f"{package}.server", *arguments], workdir, cwd=workdir,
                             env=env, timeout=10.0, spawn=spawn)
        except ServerFailedToStart:
            error = self.err_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise GradingFailure(f"{label} starts and prints 'listening on HOST:PORT'",
                                 "a listening server", " / ".join(error) or "no output",
                                 "run the server by hand: python -m <package>.server --root . 2121") from None

    def trace(self) -> Trace:
        return Trace.load(self.trace_path)

    def stop(self, timeout: float = 3.0) -> None:
        super().stop(timeout)


# --- the probe: a raw control connection the grader types into ----------------------

@dataclass
class Reply:
    code: int
    text: str
    raw: bytes

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class Probe:
    """A control connection driven byte by byte, with its own reply parser."""

    def __init__(self, address: tuple[str, int], steps: Steps, name: str = "probe"):
        self.steps = steps
        self.name = name
        try:
            self.sock = socket.create_connection(address, timeout=IO_TIMEOUT)
        except OSError as err:
            raise GradingFailure(f"{name}: connect to the server at {address[0]}:{address[1]}",
                                 "a connection", f"{type(err).__name__}: {err}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.steps.note(f"{name}: connected to the server's control port {address[1]}")

    def send(self, data: bytes) -> None:
        self.steps.note(f"{self.name}: sent {data!r}")
        try:
            self.sock.sendall(data)
        except OSError as err:
            raise GradingFailure(f"{self.name}: send {data!r} on the control connection",
                                 "the server to keep the connection open", f"{type(err).__name__}: {err}") from None

    def _line(self, what: str) -> bytes:
        while b"\n" not in self.buffer:
            try:
                chunk = receive(self.sock)
            except Hopeless as hang:
                raise GradingFailure(what, "a reply line ending in CRLF", f"nothing more: {hang}"
                                     + (f"; received so far, with no line end: {self.buffer!r}" if self.buffer else ""),
                                     "every reply line must end with CRLF (\\r\\n), and the server must answer "
                                     "each complete command line it has received") from None
            except socket.timeout:
                raise GradingFailure(what, "a reply line ending in CRLF",
                                     f"nothing more within {IO_TIMEOUT:.0f} s"
                                     + (f"; received so far, with no line end: {self.buffer!r}" if self.buffer else ""),
                                     "every reply line must end with CRLF (\\r\\n), and the server must answer "
                                     "each complete command line it has received") from None
            except OSError as err:
                raise GradingFailure(what, "a reply", f"{type(err).__name__}: {err}") from None
            if not chunk:
                raise GradingFailure(what, "a reply", "the server closed the control connection"
                                     + (f" after sending {self.buffer!r}" if self.buffer else ""),
                                     "the session must survive this; see what the server printed, above")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def reply(self, what: str = "a reply") -> Reply:
        raw = self._line(what)
        first = raw.decode("utf-8", "replace").rstrip("\r\n")
        match = re.fullmatch(r"(\d{3})([ -])(.*)", first, re.DOTALL)
        if not match:
            raise GradingFailure(what, "a reply line 'CODE text' (three digits, a space or '-')", repr(raw))
        raw_all, lines = raw, [match.group(3)]
        if match.group(2) == "-":
            while True:
                more = self._line(what)
                raw_all += more
                text = more.decode("utf-8", "replace").rstrip("\r\n")
                if text[:3] == match.group(1) and text[3:4] == " ":
                    lines.append(text[4:])
                    break
                lines.append(text)
        reply = Reply(int(match.group(1)), "\n".join(lines), raw_all)
        self.steps.note(f"{self.name}: received {raw_all!r}")
        return reply

    def command(self, line: str, expected: int | tuple | None = None, what: str | None = None) -> Reply:
        self.send(line.encode("utf-8") + b"\r\n")
        reply = self.reply(what or f"the reply to {line}")
        if expected is not None:
            codes = expected if isinstance(expected, tuple) else (expected,)
            expect(reply.code in codes, what or f"the reply to {line}",
                   " or ".join(map(str, codes)), str(reply))
        return reply

    def login(self) -> None:
        self.reply("the 220 greeting")
        self.command("USER anonymous", (331, 230))
        self.command("PASS guest@", 230)

    def close(self) -> None:
        self.sock.close()


def data_connect(address: tuple[str, int], what: str) -> socket.socket:
    try:
        sock = socket.create_connection(address, timeout=IO_TIMEOUT)
    except OSError as err:
        raise GradingFailure(what, f"a connection to {address[0]}:{address[1]}",
                             f"{type(err).__name__}: {err}") from None
    return sock


class Hopeless(Exception):
    """Waiting longer for the student's code cannot help (see watch.py): the reason."""


def receive(sock: socket.socket) -> bytes:
    """``sock.recv``, within the socket's timeout, but no longer than the
    grader's watch finds it worth waiting: raises Hopeless with its reason."""
    wait = watch.current().wait()
    deadline = time.monotonic() + (sock.gettimeout() or IO_TIMEOUT)
    while not select.select([sock], [], [], min(watch.CHECK, max(0.0, deadline - time.monotonic())))[0]:
        if time.monotonic() >= deadline:
            raise socket.timeout("timed out")
        reason = wait.hopeless()
        if reason:
            raise Hopeless(reason)
    return sock.recv(65536)


def read_to_eof(sock: socket.socket, what: str) -> bytes:
    chunks = []
    while True:
        try:
            chunk = receive(sock)
        except Hopeless as hang:
            raise GradingFailure(what, "the server to close the data connection when the data ends",
                                 f"no end of stream after {sum(map(len, chunks))} bytes: {hang}",
                                 "closing the data connection is what tells the receiver the file has ended") from None
        except socket.timeout:
            raise GradingFailure(what, "the server to close the data connection when the data ends",
                                 f"no end of stream within {IO_TIMEOUT:.0f} s after {sum(map(len, chunks))} bytes",
                                 "closing the data connection is what tells the receiver the file has ended") from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def parse_227(text: str) -> tuple[str, int]:
    """The address a 227 reply announces, read by the kit's one parser (trace.announce)."""
    from trace.announce import parse_announcement
    announced = parse_announcement("227", text)
    if announced is None:
        raise GradingFailure("the 227 reply carries h1,h2,h3,h4,p1,p2", "six numbers", repr(text))
    return announced


# --- clients the student's server is tested with ----------------------------------------

class FtplibClient:
    """Python's ftplib: an FTP client that none of us wrote."""
    name = "ftplib"

    def __init__(self, address: tuple[str, int], steps: Steps, passive: bool = True):
        self.steps = steps
        self.ftp = ftplib.FTP(timeout=IO_TIMEOUT)
        self._do(f"connect to {address[0]}:{address[1]}", self.ftp.connect, *address)
        self._do("log in as anonymous", self.ftp.login)
        self.ftp.set_pasv(passive)

    def _do(self, what: str, call, *args):
        self.steps.note(f"ftplib: {what}")
        with watch.guard() as guard:
            try:
                return call(*args)
            except ftplib.all_errors as err:
                error = err
        if guard.reason:
            raise GradingFailure(f"ftplib: {what}", "success", f"the server under test hung: {guard.reason}",
                                 "the grader ended it rather than wait for its timeout") from None
        hint = ""
        if isinstance(error, (socket.timeout, TimeoutError)):
            hint = ("nothing arrived in time: a reply without CRLF, a data connection never "
                    "accepted or never closed, or a server stuck in a loop")
        raise GradingFailure(f"ftplib: {what}", "success", f"{type(error).__name__}: {error}", hint) from None

    def get(self, remote: str) -> bytes:
        out = bytearray()
        self._do(f"RETR {remote}", self.ftp.retrbinary, f"RETR {remote}", out.extend)
        return bytes(out)

    def put(self, remote: str, data: bytes) -> None:
        self._do(f"STOR {remote}", self.ftp.storbinary, f"STOR {remote}", io.BytesIO(data))

    def names(self, path: str = "") -> list[str]:
        return self._do(f"NLST {path}".rstrip(), self.ftp.nlst, *([path] if path else []))

    def long_list(self, path: str = "") -> list[str]:
        lines: list[str] = []
        self._do(f"LIST {path}".rstrip(), self.ftp.retrlines, f"LIST {path}".rstrip(), lines.append)
        return lines

    def noop(self) -> str:
        return self._do("NOOP", self.ftp.voidcmd, "NOOP")

    def quit(self) -> None:
        self._do("QUIT", self.ftp.quit)

    def close(self) -> None:
        self.ftp.close()


class ReferenceClient:
    """The kit's own client (solutions.ftpclient), with the same methods."""
    name = "reference"

    def __init__(self, address: tuple[str, int], steps: Steps, workdir: Path, passive: bool = True):
        from solutions.ftpclient import FtpClient
        self.steps = steps
        self.workdir = workdir
        self.client = FtpClient(*address, passive=passive, timeout=IO_TIMEOUT)
        self._do("connect", self.client.connect)
        self._do("log in as anonymous", self.client.login)

    def _do(self, what: str, call, *args):
        from solutions.ftpclient import ConnectionLost, FtpError
        self.steps.note(f"reference client: {what}")
        with watch.guard() as guard:
            try:
                return call(*args)
            except (FtpError, ConnectionLost, OSError, ValueError) as err:
                error = err
        if guard.reason:
            raise GradingFailure(f"reference client: {what}", "success",
                                 f"the server under test hung: {guard.reason}",
                                 "the grader ended it rather than wait for its timeout") from None
        raise GradingFailure(f"reference client: {what}", "success", f"{type(error).__name__}: {error}") from None

    def get(self, remote: str) -> bytes:
        local = self.workdir / f"ref-get-{time.monotonic_ns()}"
        self._do(f"get {remote}", self.client.get, remote, str(local))
        return local.read_bytes()

    def put(self, remote: str, data: bytes) -> None:
        local = self.workdir / f"ref-put-{time.monotonic_ns()}"
        local.write_bytes(data)
        self._do(f"put {remote}", self.client.put, str(local), remote)

    def names(self, path: str = "") -> list[str]:
        text = self._do(f"NLST {path}".rstrip(), self.client.listing, path, True)
        return [line for line in text.split("\r\n") if line]

    def long_list(self, path: str = "") -> list[str]:
        text = self._do(f"LIST {path}".rstrip(), self.client.listing, path, False)
        return [line for line in text.split("\r\n") if line]

    def noop(self) -> str:
        return str(self._do("NOOP", self.client.expect, "NOOP"))

    def quit(self) -> None:
        self._do("QUIT", self.client.quit)

    def close(self) -> None:
        self.client.close()


def client_kinds() -> list[str]:
    return ["ftplib", "reference"] if reference_available() else ["ftplib"]


# --- the reference server the student's client is tested against -----------------------

class PyftpdlibServer:
    """Where there is no reference solution (a student release): pyftpdlib,
    with the HASH command of draft-bryan-ftpext-hash added."""

    def __init__(self, root: Path, steps: Steps):
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.servers import ThreadedFTPServer

        class Handler(FTPHandler):
            proto_cmds = dict(FTPHandler.proto_cmds, HASH=dict(
                perm="r", auth=True, arg=True, help="Syntax: HASH <SP> file-name"))
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self._extra_feats = [*self._extra_feats, "HASH SHA-256*"]

            def ftp_HASH(self, path):
                try:
                    with open(path, "rb") as file:
                        content = file.read()
                except OSError:
                    self.respond("550 No such file.")
                    return
                self.respond(f"213 SHA-256 0-{len(content)} {hashlib.sha256(content).hexdigest()} "
                             f"{self.fs.fs2ftp(path)}")

        authorizer = DummyAuthorizer()
        authorizer.add_anonymous(str(root), perm="elradfmw")
        Handler.authorizer = authorizer
        Handler.timeout = 30
        import logging
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        from pyftpdlib.ioloop import IOLoop
        # An IOLoop of its own: the default is a process-wide singleton, which
        # close_all() closes for every later server in this process.
        self.server = ThreadedFTPServer(("127.0.0.1", 0), Handler, ioloop=IOLoop())
        # ThreadedFTPServer's stop flag is one Event shared by every instance: a
        # stopped server would stop the next one's sessions. Give it its own.
        self.server._exit = threading.Event()
        self.host, self.port = self.server.address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"timeout": 0.05},
                                       daemon=True)
        self.thread.start()
        steps.note(f"reference server: pyftpdlib on port {self.port} (untraced)")

    @property
    def address(self):
        return self.host, self.port

    def trace(self) -> Trace:
        return Trace([])

    def stop(self) -> None:
        self.server.close_all()
