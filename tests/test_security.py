"""The security lessons of FTP (RFC 2577), held against real connections.

Bounce attacks (PORT/EPRT to a third host), port stealing (someone else
connecting to a passive port first), password guessing and user probing,
and every way out of the root a path can try. The bar is vsftpd's defaults.
Each test talks to a server on loopback over plain sockets, so it sees the
replies and connections exactly as an attacker would.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import time
from pathlib import Path

import pytest

from solutions.filesystem import Root
from solutions.server import Server
from solutions.session import ServerConfig

ATTACKER = "127.0.0.2"      # another loopback address: "another host" on one machine
REPLY_LINE = re.compile(rb"(\d{3})([ -])(.*)\r\n", re.DOTALL)


class Control:
    """A bare control connection: send any bytes, read whole replies strictly."""

    def __init__(self, address, source: str | None = None, timeout: float = 10):
        self.sock = socket.create_connection(address, timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> tuple[int, str]:
        """One reply as (code, text); multi-line replies are joined by newlines.
        Raises ConnectionError if the server closes instead."""
        first = self._line()
        code, sep, text = first.group(1), first.group(2), first.group(3).decode()
        lines = [text]
        while sep == b"-":
            line = self.file.readline()
            if not line:
                raise ConnectionError("closed inside a multi-line reply")
            match = REPLY_LINE.fullmatch(line)
            if match and match.group(1) == code and match.group(2) == b" ":
                lines.append(match.group(3).decode())
                break
            lines.append(line.decode().rstrip("\r\n"))
        return int(code), "\n".join(lines)

    def _line(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("the server closed the connection")
        match = REPLY_LINE.fullmatch(line)
        assert match, f"not a reply line: {line!r}"
        return match

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def ask(self, line: str | bytes) -> tuple[int, str]:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def login(self, user: str = "anonymous", password: str = "guest") -> "Control":
        assert self.ask(f"USER {user}")[0] == 331
        assert self.ask(f"PASS {password}")[0] == 230
        return self

    def pasv(self) -> int:
        code, text = self.ask("PASV")
        assert code == 227, text
        numbers = [int(n) for n in re.search(r"\(([\d,]+)\)", text).group(1).split(",")]
        return numbers[4] * 256 + numbers[5]

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True if the server closes the connection (within ``timeout``)."""
        self.sock.settimeout(timeout)
        try:
            return self.file.read(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def receive_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def start_server(server_root):
    """Factory: the reference server in this process, with any ServerConfig options."""
    servers = []

    def start(root: Path = server_root, max_per_address: int | None = None, **options) -> Server:
        options.setdefault("login_failure_delay", 0.05)
        server = Server("127.0.0.1", 0, ServerConfig(Root(root), **options),
                        max_per_address=max_per_address).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def control(start_server):
    connection = Control(start_server().address).login()
    yield connection
    connection.close()


# --- the bounce attack -------------------------------------------------------

@pytest.fixture
def third_host():
    """A listener on another loopback address, standing in for a victim host."""
    victim = socket.create_server((ATTACKER, 0))
    victim.settimeout(0.3)
    yield victim
    victim.close()


def nobody_connected(listener: socket.socket) -> bool:
    try:
        listener.accept()[0].close()
        return False
    except TimeoutError:
        return True


def test_port_and_eprt_to_another_host_are_refused(control, server_root, third_host):
    (server_root / "f.txt").write_text("payload")
    port = third_host.getsockname()[1]
    assert control.ask(f"PORT 127,0,0,2,{port >> 8},{port & 255}")[0] == 501
    assert control.ask(f"EPRT |1|{ATTACKER}|{port}|")[0] == 501
    assert control.ask("EPRT |2|::1|5000|")[0] == 501
    # No data connection was set up, so the transfer cannot even start...
    assert control.ask("RETR f.txt")[0] == 425
    # ...and the third host never heard from the server.
    assert nobody_connected(third_host)


@pytest.mark.parametrize("arg", ["127,0,0,1,0,21", "127,0,0,1,3,255", "|1|127.0.0.1|25|", "|1|127.0.0.1|1023|"])
def test_port_below_1024_is_refused_even_to_the_client(control, arg):
    verb = "EPRT" if arg.startswith("|") else "PORT"
    assert control.ask(f"{verb} {arg}")[0] == 501


def test_port_to_the_clients_own_address_above_1023_works(control, server_root):
    (server_root / "f.txt").write_text("payload")
    mine = socket.create_server(("127.0.0.1", 0))
    try:
        port = mine.getsockname()[1]
        assert control.ask(f"PORT 127,0,0,1,{port >> 8},{port & 255}")[0] == 200
        control.send(b"RETR f.txt\r\n")
        data, _ = mine.accept()
        assert control.reply()[0] == 150
        assert receive_all(data) == b"payload"
        data.close()
        assert control.reply()[0] == 226
    finally:
        mine.close()


# --- port stealing -----------------------------------------------------------

def test_passive_connection_from_another_address_is_dropped(control, server_root):
    content = os.urandom(200_000)
    (server_root / "secret.bin").write_bytes(content)
    port = control.pasv()
    # The thief connects first, from another address, hoping to get the file.
    thief = socket.create_connection(("127.0.0.1", port), source_address=(ATTACKER, 0), timeout=5)
    try:
        control.send(b"RETR secret.bin\r\n")
        # The server accepts the thief, sees the wrong address and hangs up:
        # the thief reads an end of file (or a reset) and not one byte.
        try:
            stolen = receive_all(thief)
        except ConnectionResetError:
            stolen = b""
        assert stolen == b""
        # The real client still gets its file on the same port.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as data:
            assert control.reply()[0] == 150
            assert receive_all(data) == content
        assert control.reply()[0] == 226
    finally:
        thief.close()


def test_passive_ports_are_chosen_at_random(control):
    ports = [control.pasv() for _ in range(30)]
    # Random draws may repeat (30 from ~28,000 ports: a repeat in about 1.5% of
    # runs, the birthday problem); more than two repeats would be no draw at all.
    assert len(set(ports)) >= len(ports) - 2, ports
    # A counter hands out the next port each time (steps of 1 or 2), which
    # lets an attacker predict the next one and connect first. Random
    # choices jump around the whole ephemeral range.
    steps = [abs(b - a) for a, b in zip(ports, ports[1:])]
    assert statistics.median(steps) > 500, ports
    assert ports != sorted(ports)


# --- logging in --------------------------------------------------------------

@pytest.fixture
def guarded(start_server):
    return start_server(user="alice", password="s3cret", login_failure_delay=0.3)


def test_user_always_gets_331_so_names_cannot_be_probed(guarded):
    connection = Control(guarded.address)
    try:
        answers = {name: connection.ask(f"USER {name}") for name in ("alice", "root", "nobody", "anonymous")}
        assert set(answers.values()) == {answers["alice"]}
        assert answers["alice"][0] == 331
    finally:
        connection.close()


def test_failed_logins_are_delayed_and_the_third_closes_the_connection(guarded):
    connection = Control(guarded.address)
    try:
        for attempt in (1, 2, 3):
            assert connection.ask("USER alice")[0] == 331
            started = time.monotonic()
            code, _ = connection.ask("PASS wrong")
            assert code == 530
            assert time.monotonic() - started >= 0.3
        assert connection.reply()[0] == 421
        assert connection.is_closed()
    finally:
        connection.close()


def test_a_wrong_user_with_the_right_password_fails_too(guarded):
    connection = Control(guarded.address)
    try:
        assert connection.ask("USER bob")[0] == 331
        assert connection.ask("PASS s3cret")[0] == 530
        assert connection.ask("LIST")[0] == 530
        connection.login("alice", "s3cret")
        assert connection.ask("PWD")[0] == 257
    finally:
        connection.close()


@pytest.mark.parametrize("line", ["RETR f", "STOR f", "LIST", "NLST", "CWD /", "PASV", "EPSV",
                                  "PORT 127,0,0,1,200,1", "SIZE f", "HASH f", "PWD"])
def test_nothing_works_before_login(guarded, line):
    connection = Control(guarded.address)
    try:
        assert connection.ask(line)[0] == 530
    finally:
        connection.close()


def test_one_clients_login_delay_does_not_slow_another(guarded):
    guesser = Control(guarded.address)
    other = Control(guarded.address)
    try:
        guesser.ask("USER alice")
        guesser.send(b"PASS wrong\r\n")          # the server now sleeps on this session
        started = time.monotonic()
        assert other.ask("NOOP")[0] == 200
        assert time.monotonic() - started < 0.2
        assert guesser.reply()[0] == 530
    finally:
        guesser.close()
        other.close()


def test_the_command_line_server_delays_failures_by_a_second(server_process, server_root):
    server = server_process(server_root, "--user", "alice", "--password", "s3cret")
    connection = Control((server.host, server.port))
    try:
        assert connection.ask("USER alice")[0] == 331
        started = time.monotonic()
        assert connection.ask("PASS guess")[0] == 530
        assert time.monotonic() - started >= 0.9
    finally:
        connection.close()


# --- the root holds ----------------------------------------------------------

@pytest.fixture
def outside(server_root):
    """A directory beside the root, with a secret in it, and links to it from inside."""
    directory = server_root.parent / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("top secret")
    os.symlink(directory, server_root / "outdir")
    os.symlink(directory / "secret.txt", server_root / "outlink")
    (server_root / "sub").mkdir()
    (server_root / "sub" / "inside.txt").write_text("fine")
    os.symlink(server_root / "sub" / "inside.txt", server_root / "inlink")
    return directory


def outside_is_untouched(directory: Path) -> bool:
    return sorted(p.name for p in directory.iterdir()) == ["secret.txt"] and \
        (directory / "secret.txt").read_text() == "top secret"


@pytest.mark.parametrize("path", ["../outside/secret.txt", "../../etc/passwd", "/../outside/secret.txt",
                                  "sub/../../outside/secret.txt", "./../outside/secret.txt",
                                  "outlink", "outdir/secret.txt", "/outdir/secret.txt", "{absolute}"])
def test_no_path_reads_outside_the_root(control, outside, path):
    path = path.format(absolute=outside / "secret.txt")
    for verb in ("RETR", "SIZE", "HASH", "LIST", "NLST", "CWD"):
        code, text = control.ask(f"{verb} {path}")
        assert code == 550, (verb, path, code, text)
        assert "top secret" not in text


@pytest.mark.parametrize("path", ["../evil.txt", "/../evil.txt", "sub/../../evil.txt", "outdir/evil.txt",
                                  "outlink", "../outside/secret.txt"])
def test_no_path_writes_outside_the_root(control, server_root, outside, path):
    control.pasv()
    code, _ = control.ask(f"STOR {path}")
    assert code in (550, 553)
    assert outside_is_untouched(outside)
    assert not (server_root.parent / "evil.txt").exists()


def test_a_link_that_stays_inside_the_root_is_followed(control, outside):
    port = control.pasv()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as data:
        assert control.ask("RETR inlink")[0] == 150
        assert receive_all(data) == b"fine"
    assert control.reply()[0] == 226


def listing(control: Control, line: str) -> bytes:
    port = control.pasv()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as data:
        code, text = control.ask(line)
        assert code == 150, text
        body = receive_all(data)
    assert control.reply()[0] == 226
    return body


@pytest.mark.parametrize("verb", ["LIST", "NLST"])
def test_listings_never_show_what_is_outside(control, outside, verb):
    for path in ("", "/", "sub/..", "/sub/../"):
        body = listing(control, f"{verb} {path}".strip())
        assert b"outdir" not in body and b"outlink" not in body and b"secret" not in body
        assert b"sub" in body and b"inlink" in body


def test_cwd_cannot_climb_above_the_root(control, server_root):
    (server_root / "sub").mkdir()
    assert control.ask("CWD sub")[0] == 250
    assert control.ask("CWD ../..")[0] == 550
    assert control.ask("CDUP")[0] == 250
    assert control.ask("CDUP")[0] == 250
    assert control.ask("PWD") == (257, '"/" is the current directory.')


@pytest.mark.parametrize("line,code", [
    (b"RETR a\x00b", 501),
    (b"STOR \x00", 501),
    (b"CWD sub\x00/../..", 501),
    (b"RETR ..\\..\\etc\\passwd", 553),
    (b"STOR a\\b", 553),
    (b"CWD ..\\", 553),
    (b"RETR " + b"a" * 256, 553),
    (b"STOR sub/" + "é".encode() * 128, 553),          # 256 bytes, 128 characters
    (b"RETR \xff\xfe.txt", 501),                        # not UTF-8 at all
    (b"STOR \xc0\xaf", 501),                            # overlong encoding of "/"
    (b"RETR \xed\xa0\x80", 501),                        # an encoded surrogate
])
def test_hostile_names_are_refused_and_the_session_goes_on(control, server_root, line, code):
    (server_root / "sub").mkdir()
    before = sorted(p.name for p in server_root.rglob("*"))
    control.pasv()
    assert control.ask(line)[0] == code
    assert control.ask("NOOP")[0] == 200
    assert sorted(p.name for p in server_root.rglob("*")) == before


def test_a_name_of_255_bytes_is_fine(control, server_root):
    name = "n" * 255
    (server_root / name).write_text("long")
    assert control.ask(f"SIZE {name}") == (213, "4")


def test_a_path_as_long_as_a_line_gets_a_reply_that_fits_a_line(control):
    path = "a/" * 1021                          # "CWD " + path is 2046 bytes
    code, text = control.ask(f"CWD {path}")
    assert code == 550
    assert len(f"{code} {text}") <= 2048
    assert control.ask("NOOP")[0] == 200


def test_names_on_disk_that_are_not_utf8_are_listed_as_they_are(control, server_root):
    raw_name = b"caf\xe9.txt"                   # Latin-1, not UTF-8
    with open(os.path.join(os.fsencode(server_root), raw_name), "wb") as file:
        file.write(b"x")
    assert raw_name + b"\r\n" in listing(control, "NLST")
    assert raw_name + b"\r\n" in listing(control, "LIST")
