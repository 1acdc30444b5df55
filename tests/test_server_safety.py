"""The server faults of issue 10, each held by a test that failed before its fix:
nothing a client does (or a crash does) destroys, loses or exposes a file,
and no client can hold the server hostage."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, wait_for
from solutions.server import parse_args
from solutions.safetext import printable
from test_security import ATTACKER, Control, receive_all, start_server  # noqa: F401 (a fixture)

TRIALS = 5


def epsv_port(connection: Control) -> int:
    code, text = connection.ask("EPSV")
    assert code == 229, text
    return int(re.search(r"\|\|\|(\d+)\|", text).group(1))


def partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.part")]


# --- a client that dies mid-upload after a NOOP ------------------------------------------

@pytest.mark.parametrize("control_first", [False, True], ids=["data-closed-first", "control-closed-first"])
def test_a_noop_before_dying_does_not_pass_a_truncated_upload_for_a_whole_one(start_server, server_root,
                                                                                 control_first):
    """STOR without ALLO, 2 MB, a NOOP on the control channel, then both
    connections close: the upload was broken off, and the real name must
    never appear. One recv used to see the NOOP and miss the close."""
    server = start_server()
    for trial in range(TRIALS):
        connection = Control(server.address).login()
        data = socket.create_connection(("127.0.0.1", epsv_port(connection)), timeout=10)
        connection.send(f"STOR big{trial}.bin\r\n".encode())
        assert connection.reply()[0] == 150
        data.sendall(b"x" * 2_000_000)
        connection.send(b"NOOP\r\n")
        for sock in ([connection.sock, data] if control_first else [data, connection.sock]):
            sock.close()
        connection.file.close()
        assert wait_for(lambda: not partials(server_root)), partials(server_root)
        assert not (server_root / f"big{trial}.bin").exists(), f"trial {trial}: the truncated upload was kept"


def test_a_killed_client_that_sent_a_noop_leaves_no_file(server_process, server_root):
    """The same with a real process killed by SIGKILL, as in the issue."""
    server = server_process(server_root)
    code = (
        "import socket, re, sys, time\n"
        "c = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n"
        "f = c.makefile('rb'); f.readline()\n"
        "c.sendall(b'USER a\\r\\nPASS b\\r\\nEPSV\\r\\n')\n"
        "f.readline(); f.readline(); line = f.readline()\n"
        "d = socket.create_connection((sys.argv[1], int(re.search(rb'[|]{3}(\\d+)[|]', line).group(1))))\n"
        "c.sendall(b'STOR big.bin\\r\\n'); f.readline()\n"
        "d.sendall(b'x' * 2_000_000)\n"
        "c.sendall(b'NOOP\\r\\n')\n"
        "print('sent', flush=True)\n"
        "time.sleep(60)\n")
    for _ in range(3):
        client = subprocess.Popen([sys.executable, "-c", code, server.host, str(server.port)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert client.stdout.readline().strip() == "sent"
        finally:
            client.send_signal(signal.SIGKILL)
            client.wait()
            client.stdout.close()
        assert wait_for(lambda: not partials(server_root))
        assert not (server_root / "big.bin").exists()


def test_a_live_client_that_sends_a_noop_during_the_upload_keeps_its_file(start_server, server_root):
    server = start_server()
    connection = Control(server.address).login()
    try:
        data = socket.create_connection(("127.0.0.1", epsv_port(connection)), timeout=10)
        connection.send(b"STOR kept.bin\r\n")
        assert connection.reply()[0] == 150
        data.sendall(b"y" * 500_000)
        connection.send(b"NOOP\r\n")
        data.close()
        assert connection.reply()[0] == 226
        assert connection.reply()[0] == 200                      # the NOOP, answered in order
        assert (server_root / "kept.bin").read_bytes() == b"y" * 500_000
    finally:
        connection.close()


# --- stale partial files ---------------------------------------------------------------------

def test_stale_partial_uploads_are_removed_at_start(server_process, server_root):
    (server_root / "sub").mkdir()
    stale = [server_root / ".a.bin.0123abcd.part", server_root / "sub" / ".b c.txt.deadbeef.part"]
    kept = [server_root / ".keep", server_root / "notes.part", server_root / ".x.part", server_root / "a.bin"]
    for path in stale + kept:
        path.write_text("x")
    server = server_process(server_root)
    assert Control((server.host, server.port)).login().ask("NOOP")[0] == 200     # it started
    assert [p for p in stale if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []


# --- the folder served by default ------------------------------------------------------------------

def test_without_root_the_server_serves_a_folder_made_for_it(tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "started-here"
    home.mkdir()
    elsewhere.mkdir()
    (elsewhere / "private.txt").write_text("not for anyone")
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO_ROOT))
    server = subprocess.Popen([sys.executable, "-m", "solutions.server", "0"], cwd=elsewhere, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        host, port = server.stdout.readline().split()[-1].rsplit(":", 1)
        served = home / "ftpkit-files"
        assert server.stdout.readline().strip() == f"serving {served} (read-write)"
        connection = Control((host, int(port))).login()
        data = socket.create_connection((host, epsv_port(connection)), timeout=10)
        assert connection.ask("NLST")[0] == 150
        assert receive_all(data) == b""                           # not the folder it was started in
        assert connection.reply()[0] == 226
        data = socket.create_connection((host, epsv_port(connection)), timeout=10)
        assert connection.ask("STOR notes.txt")[0] == 150        # put works out of the box
        data.sendall(b"hello")
        data.close()
        assert connection.reply()[0] == 226
        assert (served / "notes.txt").read_text() == "hello"
        connection.close()
    finally:
        server.terminate()
        server.wait(timeout=5)
        server.stdout.close()
        server.stderr.close()


def test_read_only_and_max_per_ip_options():
    args = parse_args(["--read-only", "--max-per-ip", "9", "0"])
    assert args.read_only and args.max_per_ip == 9 and args.root is None
    assert parse_args(["0"]).max_per_ip == 4 and not parse_args(["0"]).read_only


# --- dot files and control characters -----------------------------------------------------------

@pytest.mark.parametrize("line", [b"STOR .bashrc", b"RETR .bashrc", b"STOR sub/.profile", b"CWD .ssh",
                                  b"STOR a\x1b]0;pwned\x07", b"STOR a\rb", b"STOR tab\there", b"RETR \x7f",
                                  "STOR csi\u009b2J".encode()])
def test_dot_files_and_control_characters_get_553(start_server, server_root, line):
    (server_root / ".bashrc").write_text("secret")
    (server_root / ".ssh").mkdir()
    (server_root / "sub").mkdir()
    before = sorted(p.name for p in server_root.rglob("*"))
    connection = Control(start_server().address).login()
    try:
        connection.pasv()
        code, text = connection.ask(line)
        assert code == 553, text
        assert "secret" not in text
        assert connection.ask("NOOP")[0] == 200
    finally:
        connection.close()
    assert sorted(p.name for p in server_root.rglob("*")) == before
    assert (server_root / ".bashrc").read_text() == "secret"


def test_names_with_control_characters_on_disk_are_not_listed(start_server, server_root):
    (server_root / "evil\x1b[2J.txt").write_text("x")
    (server_root / "fine.txt").write_text("x")
    connection = Control(start_server().address).login()
    try:
        for verb in ("NLST", "LIST", "MLSD"):
            data = socket.create_connection(("127.0.0.1", connection.pasv()), timeout=10)
            assert connection.ask(verb)[0] == 150
            listing = receive_all(data)
            assert connection.reply()[0] == 226
            assert b"fine.txt" in listing and b"\x1b" not in listing, (verb, listing)
    finally:
        connection.close()


# --- slowloris and one address's share -------------------------------------------------------------

def test_a_byte_at_a_time_does_not_keep_a_connection_alive(start_server):
    """The idle timeout counts between whole commands, not between bytes."""
    server = start_server(idle_timeout=1.0)
    sock = socket.create_connection(server.address, timeout=10)
    try:
        assert sock.recv(100).startswith(b"220")
        sock.settimeout(0.2)
        received = b""
        for byte in b"USER " + b"a" * 100:                        # 20 s of trickle if never stopped
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            try:
                chunk = sock.recv(100)
            except TimeoutError:
                continue
            received += chunk
            if not chunk or b"421" in received:
                break
        assert received.startswith(b"421"), received
    finally:
        sock.close()


def test_one_address_gets_its_share_and_no_more(start_server, server_root):
    server = start_server(max_per_address=2)
    first, second = Control(server.address), Control(server.address)
    third = socket.create_connection(server.address, timeout=10)
    try:
        assert first.greeting[0] == 220 and second.greeting[0] == 220
        assert third.recv(200).startswith(b"421 Too many connections from your address")
        other = Control(server.address, source=ATTACKER)         # another address is served
        assert other.greeting[0] == 220
        other.close()
        first.close()

        def admitted() -> bool:
            with socket.create_connection(server.address, timeout=10) as probe:
                return probe.recv(200).startswith(b"220")
        assert wait_for(admitted)                                 # a slot freed is a slot again
    finally:
        second.close()
        third.close()


# --- the passive data port under attack ---------------------------------------------------------------

def test_a_foreign_connect_and_reset_does_not_abort_the_transfer(start_server, server_root):
    """Someone at another address connects to the passive port and resets
    at once: the server drops that connection and waits for its client."""
    (server_root / "f.txt").write_text("hello")
    connection = Control(start_server().address).login()
    try:
        port = connection.pasv()
        thief = socket.create_connection(("127.0.0.1", port), source_address=(ATTACKER, 0), timeout=5)
        thief.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        thief.close()                                             # RST
        data = socket.create_connection(("127.0.0.1", port), timeout=10)
        code, text = connection.ask("RETR f.txt")
        assert code == 150, text
        assert receive_all(data) == b"hello"
        assert connection.reply()[0] == 226
    finally:
        connection.close()


def test_a_flood_on_the_passive_port_does_not_lock_out_the_client(start_server, server_root):
    (server_root / "f.txt").write_text("hello")
    connection = Control(start_server().address).login()
    flood = []
    try:
        port = connection.pasv()
        for _ in range(20):
            sock = socket.socket()
            sock.setblocking(False)
            sock.bind((ATTACKER, 0))
            sock.connect_ex(("127.0.0.1", port))
            flood.append(sock)
        connection.send(b"RETR f.txt\r\n")
        data = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert connection.reply()[0] == 150
        assert receive_all(data) == b"hello"
        assert connection.reply()[0] == 226
    finally:
        for sock in flood:
            sock.close()
        connection.close()


# --- what the server prints ----------------------------------------------------------------------------

def test_the_server_log_shows_peer_bytes_escaped():
    assert printable("RETR a\x1b]0;pwned\x07b") == "RETR a\\x1b]0;pwned\\x07b"
    assert printable("é ok") == "é ok"


def test_no_escape_from_a_client_reaches_the_operators_terminal(server_process, server_root):
    server = server_process(server_root)
    connection = Control((server.host, server.port))
    hostile = "\x1b]0;pwned\x07\x1b[2J"
    for line in [f"USER {hostile}", f"PASS {hostile}", f"RETR {hostile}", f"STOR {hostile}",
                 f"CWD {hostile}", f"FROB{hostile}", f"MKD {hostile}", "QUIT"]:
        connection.send(line.encode() + b"\r\n")
    while True:
        try:
            code, text = connection.reply()
        except ConnectionError:
            break
        assert "\x1b" not in text
        if code == 221:
            break
    connection.close()
    server.stop()
    printed = server.output()
    assert "\x1b" not in printed and "\x07" not in printed
