"""Bad input gets the right reply and loses nothing; the session goes on."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, wait_for


class RawControl:
    """A bare control connection: send any bytes, read replies as text."""

    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=10)
        self.buffer = b""
        assert self.reply().startswith("220")

    def reply(self) -> str:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode()

    def ask(self, raw: bytes) -> str:
        self.sock.sendall(raw)
        return self.reply()

    def login(self):
        assert self.ask(b"USER anonymous\r\n").startswith("331")
        assert self.ask(b"PASS x\r\n").startswith("230")
        return self

    def close(self):
        self.sock.close()


@pytest.fixture
def raw(ftp_server):
    control = RawControl(ftp_server.address).login()
    yield control
    control.close()


def test_unknown_command_gets_502_and_the_session_goes_on(raw):
    assert raw.ask(b"FROB x\r\n").startswith("502 ")
    assert raw.ask(b"noop\r\n").startswith("200 ")


@pytest.mark.parametrize("line,code", [
    (b"RETR\r\n", "501"),                      # missing argument
    (b"\r\n", "500"),                          # empty line
    (b"R3TR x\r\n", "500"),                    # not a verb
    (b"RETR \xff\xfe\r\n", "501"),             # not UTF-8
    (b"STOR " + b"a" * 5000 + b"\r\n", "500"),  # too long
    (b"PORT 1,2,3\r\n", "501"),
    (b"EPRT |9|127.0.0.1|2000|\r\n", "522"),
    (b"TYPE Z\r\n", "504"),
    (b"RETR x\r\n", "550"),                    # no such file (checked before 425)
    (b"PASS again\r\n", "230"),                # already logged in
])
def test_malformed_commands_get_the_right_reply(raw, line, code):
    assert raw.ask(line).startswith(code + " ")
    assert raw.ask(b"NOOP\r\n").startswith("200 ")


def test_commands_before_login_get_530(ftp_server):
    control = RawControl(ftp_server.address)
    assert control.ask(b"LIST\r\n").startswith("530 ")
    assert control.ask(b"PASS x\r\n").startswith("503 ")     # PASS before USER
    assert control.ask(b"FEAT\r\n").startswith("211-")
    control.close()


def test_transfer_without_pasv_or_port_gets_425(raw, server_root):
    (server_root / "f").write_bytes(b"x")
    assert raw.ask(b"RETR f\r\n").startswith("425 ")


@pytest.mark.parametrize("path", ["../secret.txt", "../../secret.txt", "sub/../../secret.txt",
                                  "/../secret.txt", "{outside}"])
def test_nothing_outside_the_root_is_ever_read(raw, server_root, path):
    secret = server_root.parent / "secret.txt"
    secret.write_text("top secret")
    path = path.format(outside=secret)
    for command in ("RETR", "SIZE", "HASH", "LIST", "CWD"):
        reply = raw.ask(f"{command} {path}\r\n".encode())
        assert reply.startswith("550 "), (command, reply)


def test_a_symlink_pointing_outside_is_refused(raw, server_root):
    secret = server_root.parent / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, server_root / "link.txt")
    assert raw.ask(b"RETR link.txt\r\n").startswith("550 ")
    assert raw.ask(b"PASV\r\n").startswith("227 ")
    assert raw.ask(b"STOR link.txt\r\n").startswith("550 ")
    assert secret.read_text() == "top secret"


def partial_files(directory: Path):
    return [p for p in directory.iterdir() if p.name.endswith(".part")]


def test_ftplib_client_killed_mid_put_leaves_no_file(server_process, server_root):
    """ftplib announces no size: the server notices the dead control connection."""
    server = server_process(server_root)
    code = (
        "import ftplib, sys, time\n"
        "f = ftplib.FTP(); f.connect(sys.argv[1], int(sys.argv[2])); f.login()\n"
        "def chunks():\n"
        "    yield b'x' * 1_000_000\n"
        "    time.sleep(60)\n"
        "class Slow:\n"
        "    it = chunks()\n"
        "    def read(self, n): return next(self.it)\n"
        "f.storbinary('STOR big.bin', Slow())\n")
    client = subprocess.Popen([sys.executable, "-c", code, server.host, str(server.port)])
    try:
        assert wait_for(lambda: any(p.stat().st_size >= 1_000_000 for p in partial_files(server_root)))
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    assert wait_for(lambda: not partial_files(server_root))
    assert not (server_root / "big.bin").exists()


def test_our_client_killed_mid_put_leaves_no_file(server_process, server_root, client_dir):
    server = server_process(server_root)
    big = client_dir / "big.bin"
    with open(big, "wb") as f:
        f.truncate(4 * 1024 ** 3)          # sparse: 4 GiB that take no disk
    client = subprocess.Popen([sys.executable, "-m", "solutions.client", server.host, str(server.port)],
                              cwd=client_dir, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    try:
        client.stdin.write(b"put big.bin\n")
        client.stdin.flush()
        assert wait_for(lambda: any(p.stat().st_size > 0 for p in partial_files(server_root)))
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    assert wait_for(lambda: not partial_files(server_root))
    assert not (server_root / "big.bin").exists()


def test_get_that_breaks_off_keeps_no_partial_local_file(server_process, server_root, client_dir):
    """The server dies mid-download: the client keeps nothing under the real name."""
    with open(server_root / "big.bin", "wb") as f:
        f.truncate(4 * 1024 ** 3)
    server = server_process(server_root)
    client = subprocess.Popen([sys.executable, "-m", "solutions.client", server.host, str(server.port)],
                              cwd=client_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    client.stdin.write(b"get big.bin\n")
    client.stdin.flush()
    assert wait_for(lambda: any(p.stat().st_size > 0 for p in partial_files(client_dir)))
    server.process.send_signal(signal.SIGKILL)
    out, _ = client.communicate(b"quit\n", timeout=30)
    assert client.returncode != 0
    assert not (client_dir / "big.bin").exists()
    assert not partial_files(client_dir)
    assert b"connection lost" in out or b"426" in out


def test_a_bug_in_a_handler_is_not_hidden(ftp_server, monkeypatch, caplog):
    """dispatch catches only NotImplementedError (the lab's stubs, 502): a
    TypeError is a bug, logged with its traceback and answered 451, and the
    session goes on."""
    from solutions.session import Session

    def broken(self, _):
        return len(None)                                     # TypeError
    monkeypatch.setattr(Session, "syst", broken)
    control = RawControl(ftp_server.address).login()
    try:
        reply = control.ask(b"SYST\r\n")
        assert reply.startswith("451 SYST: internal error (TypeError)"), reply
        assert control.ask(b"NOOP\r\n").startswith("200 ")
    finally:
        control.close()
    logged = [r for r in caplog.records if r.name == "ftpkit.server" and r.exc_info]
    assert logged and logged[0].exc_info[0] is TypeError


def test_a_stub_answers_502_naming_its_exercise(ftp_server, monkeypatch):
    from solutions.session import Session

    def stub(self, _):
        raise NotImplementedError("ex9: do the thing")
    monkeypatch.setattr(Session, "syst", stub)
    control = RawControl(ftp_server.address).login()
    try:
        assert control.ask(b"SYST\r\n") == "502 ex9: not implemented yet (do the thing)"
    finally:
        control.close()
