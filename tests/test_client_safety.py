"""Issue 10, the client's side: nothing a server or a careless user does makes
the client destroy a file, hand a file to a stranger, obey a hostile
terminal sequence, grow without bound, hang, or die on Ctrl-C.

Everything runs over real loopback sockets: our server, a real thief at
127.0.0.2, or the scripted rogue server of tests/rogue_server.py.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_client, wait_for
from rogue_server import RogueServer
from solutions.shelltext import escaped
from solutions.datachannel import ConnectingEnd, ListeningEnd
from solutions.ftpclient import ConnectionLost, FtpClient


@pytest.fixture
def client(ftp_server):
    host, port = ftp_server.address
    client = FtpClient(host, port, timeout=10)
    client.connect()
    client.login()
    yield client
    client.close()


def connect_from(source_host: str, address, timeout=5.0) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(timeout)
    sock.bind((source_host, 0))
    sock.connect(address)
    return sock


# --- local files: never replace what is not a regular file ---------------------

def test_a_socket_file_is_refused_and_left_alone(client, server_root, tmp_path):
    (server_root / "f").write_bytes(b"data")
    path = tmp_path / "s.sock"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(path))
    try:
        with pytest.raises(OSError, match="neither a file nor a device"):
            client.get("f", str(path))
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sock", "server-root"]
    finally:
        unix.close()


def test_a_symbolic_link_keeps_its_link_and_its_target_gets_the_file(client, server_root, tmp_path):
    (server_root / "f").write_bytes(b"new")
    target = tmp_path / "target"
    target.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(target)
    client.get("f", str(link))
    assert link.is_symlink() and target.read_bytes() == b"new"


def test_a_link_to_nowhere_is_refused(client, server_root, tmp_path):
    (server_root / "f").write_bytes(b"data")
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OSError, match="symbolic link to nowhere"):
        client.get("f", str(link))
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


def test_get_of_a_name_that_is_no_file_writes_nothing_anywhere(ftp_server, server_root, client_dir):
    """`get ..` and `get dir/` have no name to save under: one line, nothing
    written in the local folder or its parent."""
    (server_root / "dir").mkdir()
    (server_root / "dir" / "x").write_bytes(b"x")
    before_parent = sorted(os.listdir(client_dir.parent))
    host, port = ftp_server.address
    result = run_client(host, port, ["get ..", "get dir/", "quit"], client_dir)
    assert result.returncode == 1
    assert result.stdout.count("does not name a file; give a local name") == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert os.listdir(client_dir) == []
    assert sorted(os.listdir(client_dir.parent)) == before_parent


def test_get_into_a_local_folder_saves_under_the_remote_name(ftp_server, server_root, client_dir):
    (server_root / "a.bin").write_bytes(b"abc")
    (client_dir / "inbox").mkdir()
    host, port = ftp_server.address
    result = run_client(host, port, ["get a.bin inbox", "quit"], client_dir)
    assert result.returncode == 0, result.stdout
    assert (client_dir / "inbox" / "a.bin").read_bytes() == b"abc"
    assert sorted(os.listdir(client_dir)) == ["inbox"]


# --- a download that fails its check never takes the real name ------------------

def test_a_download_that_mismatches_is_kept_aside_and_the_old_file_stays(client, server_root, client_dir):
    data = os.urandom(2_000_000)
    (server_root / "f.bin").write_bytes(data)
    local = client_dir / "f.bin"
    local.write_bytes(b"the user's older copy")

    def change_the_server_copy(n, done=[]):
        # While the server sends the old bytes (from its open file), put a
        # different file in its place: the HASH afterwards will not match.
        if not done:
            replacement = server_root / "f.new"
            replacement.write_bytes(bytes(len(data)))
            os.replace(replacement, server_root / "f.bin")
            done.append(True)

    result, verdict = client.get_checked("f.bin", str(local), progress=change_the_server_copy)
    assert result.bytes == len(data)
    assert (verdict.method, verdict.ok) == ("HASH", False)
    assert local.read_bytes() == b"the user's older copy"
    assert (client_dir / "f.bin.mismatch").read_bytes() == data
    assert sorted(os.listdir(client_dir)) == ["f.bin", "f.bin.mismatch"]


def test_a_download_that_matches_takes_its_name(client, server_root, client_dir):
    (server_root / "f.bin").write_bytes(b"same")
    result, verdict = client.get_checked("f.bin", str(client_dir / "f.bin"))
    assert verdict.ok is True and (client_dir / "f.bin").read_bytes() == b"same"
    assert os.listdir(client_dir) == ["f.bin"]


# --- active mode: the file goes to the server, not to a thief -------------------

def test_active_mode_accepts_only_the_server_even_when_a_thief_connects_first(client, server_root, client_dir):
    data = os.urandom(300_000)
    (server_root / "secret.bin").write_bytes(data)
    client.passive = False
    thief_got = []
    original = client.prepare_data_channel

    def announce_then_let_the_thief_in():
        end = original()            # PORT is sent: the port is public now
        thief = connect_from("127.0.0.2", end.address)
        thief.settimeout(10)

        def steal():
            chunks = []
            try:
                while chunk := thief.recv(65536):
                    chunks.append(chunk)
            except OSError:
                pass
            thief_got.append(b"".join(chunks))
            thief.close()
        threading.Thread(target=steal, daemon=True).start()
        return end

    client.prepare_data_channel = announce_then_let_the_thief_in
    received = client.get("secret.bin", str(client_dir / "secret.bin"))
    assert received.bytes == len(data)
    assert (client_dir / "secret.bin").read_bytes() == data
    assert wait_for(lambda: thief_got, 10)
    assert thief_got == [b""]       # the thief was dropped and got nothing


# --- ListeningEnd: strangers neither break nor starve the transfer -------------

def test_a_stranger_that_connects_and_resets_does_not_break_the_accept():
    end = ListeningEnd("127.0.0.1", accept_timeout=10, transfer_timeout=10, allowed_peer="127.0.0.1")
    try:
        stranger = connect_from("127.0.0.2", end.address)
        # SO_LINGER 0: close sends a reset; accepting that connection later
        # gives a socket with no peer (getpeername: ENOTCONN).
        stranger.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stranger.close()
        real = connect_from("127.0.0.1", end.address)
        with real, end.open() as accepted:
            assert accepted.getpeername() == real.getsockname()
            real.sendall(b"hello")
            assert accepted.recv(5) == b"hello"
    finally:
        end.close()


def test_a_flood_from_a_stranger_does_not_starve_the_real_peer():
    end = ListeningEnd("127.0.0.1", accept_timeout=10, transfer_timeout=10, allowed_peer="127.0.0.1")
    flood = []
    try:
        for _ in range(50):
            flood.append(connect_from("127.0.0.2", end.address))
        real = socket.socket()
        real.setblocking(False)
        real.bind(("127.0.0.1", 0))
        assert real.connect_ex(end.address) in (0, errno.EINPROGRESS)
        # The handshake completes while the strangers still wait in the
        # queue: with a backlog of 1 the real peer's SYN would be dropped.
        assert select.select([], [real], [], 5)[1] == [real]
        assert real.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        real.setblocking(True)
        with real, end.open() as accepted:
            assert accepted.getpeername() == real.getsockname()
    finally:
        end.close()
        for sock in flood:
            sock.close()


# --- ConnectingEnd: connect from a chosen port, or any if it is taken ----------

def test_connecting_end_connects_from_the_source_port_and_falls_back_when_busy():
    with socket.create_server(("127.0.0.1", 0)) as peer, socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()             # a listener holds this port: nobody may bind it
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        wanted = free.getsockname()
        free.close()
        with ConnectingEnd(peer.getsockname(), 5, source=wanted).open() as sock:
            assert sock.getsockname() == wanted
        with ConnectingEnd(peer.getsockname(), 5, source=holder.getsockname()).open() as sock:
            assert sock.getsockname()[1] != holder.getsockname()[1]
        assert ConnectingEnd(peer.getsockname()).source is None


# --- what the server says is shown, never obeyed by the terminal ---------------

def test_escaped_shows_controls_and_keeps_text():
    assert escaped("a\x1b]0;owned\x07b") == "a\\x1b]0;owned\\x07b"
    assert escaped("x\rY\x9bz\u202e") == "x\\x0dY\\x9bz\\u202e"
    assert escaped("line 1\n\tindented é ✓") == "line 1\n\tindented é ✓"


def test_replies_and_listings_from_a_hostile_server_reach_the_terminal_escaped(client_dir):
    def hostile(control, server):
        server.log_in(control, welcome="220-\x1b]0;pwned\x07\r\n220 \x1b[2Jhello\r\n")
        assert server.command() == "PASV"
        listener, announce = server.passive_listener()
        server.send(control, announce)
        assert server.command() == "LIST"
        data, _ = listener.accept()
        server.send(control, "150 here\r\n")
        data.sendall(b"-rw-r--r-- 1 a a 1 Jan 1 00:00 \x1b[31mred\x1b[0m\rfake\r\n")
        data.close()
        server.send(control, "226 \x1b[?1049hdone\r\n")
        server.command()
        server.send(control, "221 bye\r\n")

    with RogueServer(hostile) as rogue:
        result = run_client(*rogue.address, ["verbose", "verbose", "ls", "quit"], client_dir, timeout=30)
    assert rogue.error is None
    out = result.stdout + result.stderr
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31mred\\x1b[0m\\x0dfake" in out
    assert "226 \\x1b[?1049hdone" in out


# --- bounds: a reply cannot grow the client, a silent data channel cannot hang it

def test_an_endless_multiline_reply_is_refused_and_the_connection_closed():
    def flood(control, server):
        server.send(control, "220 hi\r\n")
        server.command()
        server.send(control, "331-here comes a lot\r\n")
        line = b"331-" + b"x" * 1000 + b"\r\n"
        for _ in range(50_000):                 # 50 MB, unless the client hangs up
            server.send(control, line * 10)

    with RogueServer(flood) as rogue:
        client = FtpClient(*rogue.address, timeout=10)
        client.connect()
        with pytest.raises(ConnectionLost, match="reply is over"):
            client.login()
        assert client.control is None
        assert wait_for(lambda: not rogue.thread.is_alive(), 20)
    assert rogue.sent < 20 * 1024 * 1024        # it stopped reading long before the end


@pytest.mark.timeout(30)
def test_a_silent_data_connection_fails_after_the_clients_timeout(client_dir):
    """The server opens the data connection, says 150, and sends nothing:
    with --timeout 2 the download must fail, not wait 60 s."""
    def silent(control, server):
        server.log_in(control)
        assert server.command() == "PASV"
        listener, announce = server.passive_listener()
        server.send(control, announce)
        assert server.command().startswith("RETR")
        data, _ = listener.accept()
        server.sockets.append(data)
        server.send(control, "150 sending (not really)\r\n")
        server.command()            # wait until the client gives up and leaves

    with RogueServer(silent) as rogue:
        client = FtpClient(*rogue.address, timeout=2)
        client.connect()
        client.login()
        with pytest.raises((OSError, ConnectionLost), match="timed out"):
            client.get("f", str(client_dir / "f"))
        client.close()
    assert os.listdir(client_dir) == []


# --- Ctrl-C: abort, clean up, report, and stay at the prompt -------------------

class Terminal:
    """The client on a pseudo-terminal, as a user runs it."""

    def __init__(self, host, port, cwd: Path, *extra: str):
        import pty
        self.pid, self.fd = pty.fork()
        if self.pid == 0:                                  # the child: the client
            os.chdir(cwd)
            os.environ["PYTHONPATH"] = str(REPO_ROOT)
            os.execv(sys.executable, [sys.executable, "-m", "solutions.client", *extra, host, str(port)])
        self.screen = b""

    def read_until(self, text: str, timeout: float = 30) -> bool:
        end = time.monotonic() + timeout
        while text.encode() not in self.screen and time.monotonic() < end:
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    self.screen += os.read(self.fd, 65536)
                except OSError:
                    break
        return text.encode() in self.screen

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def close(self) -> int:
        self.type("quit\n")
        self.read_until("221")
        for _ in range(100):
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return status
            time.sleep(0.1)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError("the client did not exit after quit")

    @property
    def text(self) -> str:
        return self.screen.decode(errors="replace")


@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal (pty), which only POSIX has")
@pytest.mark.timeout(120)
def test_ctrl_c_aborts_a_get_and_a_put_and_the_shell_goes_on(server_process, server_root, client_dir):
    size = 24 * 1024 * 1024
    (server_root / "big.bin").write_bytes(os.urandom(size))
    (client_dir / "up.bin").write_bytes(os.urandom(size))
    server = server_process(server_root, "--fault-delay", "0.03")   # about 2 MB/s
    log = client_dir.parent / "client.log"
    term = Terminal(server.host, server.port, client_dir, "--trace", str(log))
    try:
        assert term.read_until("ftp> ")
        # A missing file: its 550 is printed once (not once for SIZE too).
        term.type("get missing.bin\n")
        assert term.read_until("ftp> ", 20) and term.read_until("550", 1)
        mark = len(term.screen)
        term.type("get big.bin\n")
        assert wait_for(lambda: any(n.endswith(".part") for n in os.listdir(client_dir)), 20)
        time.sleep(1.5)             # let some megabytes arrive
        term.type("\x03")
        assert term.read_until("interrupted: download of big.bin aborted after", 30), term.text[mark:]
        term.type("put up.bin\n")
        time.sleep(2.5)
        term.type("\x03")
        assert term.read_until("interrupted: upload of up.bin aborted after", 30), term.text[mark:]
        # The control channel is in step: the next command gets its own reply.
        term.type("pwd\n")
        assert term.read_until("is the current directory", 20), term.text[mark:]
        status = term.close()
    finally:
        if os.path.exists(f"/proc/{term.pid}"):
            os.kill(term.pid, 9)
    text = term.text
    assert text.count("550") == 1, text
    moved = [int(line.split("aborted after ")[1].split()[0]) for line in text.splitlines()
             if "aborted after" in line]
    assert len(moved) == 2 and all(0 < n < size for n in moved), text
    # The trace (and so trace.view's summary) counts the same bytes, not 0.
    import json
    ends = [event for event in map(json.loads, log.read_text().splitlines())
            if event.get("type", event.get("event")) == "transfer_end" and event.get("verdict") == "aborted"]
    assert [end["bytes"] for end in ends if end["path"] != "missing.bin"] == moved, ends
    assert "partial file was removed" in text
    assert sorted(os.listdir(client_dir)) == ["up.bin"]      # no big.bin, no .part
    assert "Traceback" not in text
    assert os.WIFEXITED(status)


@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal (pty), which only POSIX has")
@pytest.mark.timeout(60)
def test_ctrl_c_during_the_hash_check_sends_abor_removes_the_download_and_goes_on(client_dir):
    """The server takes its time over HASH (a large file): Ctrl-C sends ABOR,
    the unchecked download is removed, and the next command gets its own reply."""
    hashing = threading.Event()
    seen = []

    def slow_hash(control, server):
        server.log_in(control, features=" HASH SHA-256\r\n SIZE\r\n")
        while line := server.command():
            seen.append(line)
            verb = line.split(" ")[0].lstrip("\xff\xf4\xf2").upper()   # Telnet IP, DM before ABOR
            if verb == "SIZE":
                server.send(control, "213 5\r\n")
            elif verb == "PASV":
                listener, announce = server.passive_listener()
                server.send(control, announce)
            elif verb == "RETR":
                data, _ = listener.accept()
                server.send(control, "150 here\r\n")
                data.sendall(b"12345")
                data.close()
                server.send(control, "226 done\r\n")
            elif verb == "HASH":
                hashing.set()           # ...and no answer until ABOR
            elif verb == "ABOR":
                server.send(control, "213 SHA-256 0-5 " + "0" * 64 + " f\r\n226 ABOR ok\r\n")
            elif verb == "PWD":
                server.send(control, '257 "/" is the current directory\r\n')
            elif verb == "QUIT":
                server.send(control, "221 bye\r\n")
                return
            else:
                server.send(control, "502 not here\r\n")

    with RogueServer(slow_hash) as rogue:
        term = Terminal(*rogue.address, client_dir)
        try:
            assert term.read_until("ftp> ")
            term.type("get f\n")
            assert hashing.wait(20)
            term.type("\x03")
            assert term.read_until("interrupted: check of f stopped after 5 bytes", 20), term.text
            term.type("pwd\n")
            assert term.read_until("is the current directory", 20), term.text
            term.close()
        finally:
            if os.path.exists(f"/proc/{term.pid}"):
                os.kill(term.pid, 9)
    assert rogue.error is None
    assert any(line.endswith("ABOR") for line in seen), seen
    assert "the partial file was removed" in term.text
    assert os.listdir(client_dir) == []
