"""Faults: killed processes, reset connections, full disks, damaged bytes.

Whichever side is still running must say clearly what went wrong (426 or
452 from the server, a non-zero exit from the client), and neither side
may keep a partial file under the real name. The server's fault-injection
options (solutions/faults.py) make the network misbehave on demand: the
client's integrity check must catch corruption that TCP never sees.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_client, wait_for
from servers import RunningServer
from solutions.faults import CHUNK, Faults, FaultySocket
from test_security import Control, receive_all, start_server  # noqa: F401 (a fixture)


def partial_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".part")]


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def faulty_server(server_process, server_root):
    """Factory: the server as a subprocess with the given options (fault
    injection, ...); its stderr readable any time, stopped after the test."""
    def start(*options: str, root: Path = server_root) -> RunningServer:
        return server_process(root, *options)
    return start


def start_client(server: RunningServer, cwd: Path, *commands: str) -> subprocess.Popen:
    client = subprocess.Popen([sys.executable, "-m", "solutions.client", server.host, str(server.port)],
                              cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    client.stdin.write("".join(f"{c}\n" for c in commands).encode())
    client.stdin.flush()
    return client


def random_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# --- the fault injector itself, on a real socket pair ------------------------

def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of one TCP connection on loopback (a reset needs TCP, not a Unix socket)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        left = socket.create_connection(listener.getsockname(), timeout=10)
        right, _ = listener.accept()
    right.settimeout(10)
    return left, right


def test_flip_inverts_exactly_every_nth_byte_across_chunks():
    left, right = tcp_pair()
    data = bytes(range(256)) * 1000            # 256,000 bytes: several chunks
    faulty = FaultySocket(left, Faults(flip_every=1000))
    threading.Thread(target=lambda: (faulty.sendall(data), left.close()), daemon=True).start()
    received = receive_all(right)
    right.close()
    differ = [i for i in range(len(data)) if data[i] != received[i]]
    assert differ == list(range(999, len(data), 1000))
    assert all(received[i] == data[i] ^ 0xFF for i in differ)


def test_flip_on_the_receiving_side_damages_what_is_read():
    left, right = tcp_pair()
    data = os.urandom(3 * CHUNK + 17)
    threading.Thread(target=lambda: (left.sendall(data), left.close()), daemon=True).start()
    faulty = FaultySocket(right, Faults(flip_every=CHUNK))
    buffer, received = bytearray(100_000), bytearray()
    while n := faulty.recv_into(buffer):
        received += buffer[:n]
    right.close()
    assert [i for i in range(len(data)) if data[i] != received[i]] == [CHUNK - 1, 2 * CHUNK - 1, 3 * CHUNK - 1]


def test_drop_after_sends_exactly_n_bytes_then_resets():
    left, right = tcp_pair()
    faulty = FaultySocket(left, Faults(drop_after=100_000))
    with pytest.raises(ConnectionResetError):
        faulty.sendall(os.urandom(300_000))
    received = 0
    with pytest.raises(ConnectionResetError):
        while chunk := right.recv(65536):
            received += len(chunk)
        right.close()
        raise AssertionError("a clean end of file, not a reset")
    assert received <= 100_000


def test_delay_slows_each_chunk():
    left, right = tcp_pair()
    faulty = FaultySocket(left, Faults(delay=0.05))
    threading.Thread(target=lambda: (receive_all(right), right.close()), daemon=True).start()
    started = time.monotonic()
    faulty.sendall(b"x" * (4 * CHUNK))
    assert time.monotonic() - started >= 4 * 0.05
    left.close()


@pytest.mark.parametrize("option", [["--fault-flip-every", "0"], ["--fault-delay", "-1"],
                                    ["--fault-drop-after", "-5"]])
def test_nonsense_fault_options_are_refused(option, server_root):
    result = subprocess.run([sys.executable, "-m", "solutions.server", "--root", str(server_root), *option, "0"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "error" in result.stderr


# --- corruption: only an end-to-end check sees it -----------------------------

def test_corrupted_download_is_caught_by_the_hash_check(faulty_server, server_root, client_dir):
    random_file(server_root / "data.bin", 1_000_000)
    server = faulty_server("--fault-flip-every", "100000")
    result = run_client(server.host, server.port, ["get data.bin", "quit"], client_dir)
    assert "226 " in result.stdout              # TCP delivered every byte "correctly"...
    assert "SHA-256 MISMATCH" in result.stdout  # ...and only the hash says otherwise
    assert result.returncode == 1


def test_corrupted_upload_is_caught_by_the_hash_check(faulty_server, server_root, client_dir):
    digest = random_file(client_dir / "data.bin", 1_000_000)
    server = faulty_server("--fault-flip-every", "100000")
    result = run_client(server.host, server.port, ["put data.bin", "quit"], client_dir)
    assert "226 " in result.stdout and "SHA-256 MISMATCH" in result.stdout
    assert result.returncode == 1
    assert hashlib.sha256((server_root / "data.bin").read_bytes()).hexdigest() != digest


def test_a_delayed_transfer_is_slow_but_intact(faulty_server, server_root, client_dir):
    random_file(server_root / "data.bin", 10 * CHUNK)
    server = faulty_server("--fault-delay", "0.05")
    started = time.monotonic()
    result = run_client(server.host, server.port, ["get data.bin", "quit"], client_dir)
    assert time.monotonic() - started >= 10 * 0.05
    assert result.returncode == 0 and "SHA-256 matches" in result.stdout


# --- a data connection that resets ----------------------------------------------

def test_reset_mid_download_is_reported_and_leaves_no_file(faulty_server, server_root, client_dir):
    random_file(server_root / "data.bin", 3_000_000)
    server = faulty_server("--fault-drop-after", "1000000")
    result = run_client(server.host, server.port, ["get data.bin", "ls", "quit"], client_dir)
    assert result.returncode == 1
    assert "426 " in result.stdout
    assert names(client_dir) == []
    # The session went on: "ls" after the failed get was answered in step.
    assert "data.bin" in result.stdout.split("ftp> ls", 1)[1]
    assert "RETR /data.bin" in server.stderr() and "aborted" in server.stderr()


def test_reset_mid_upload_is_reported_and_leaves_no_file(faulty_server, server_root, client_dir):
    random_file(client_dir / "data.bin", 3_000_000)
    server = faulty_server("--fault-drop-after", "1000000")
    result = run_client(server.host, server.port, ["put data.bin", "ls", "quit"], client_dir)
    assert result.returncode == 1
    assert "426 " in result.stdout
    assert names(server_root) == []
    assert "221 " in result.stdout
    assert "STOR /data.bin" in server.stderr()


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN, as a crashed host or a middlebox would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_client_resets_the_data_connection_mid_download(start_server, server_root):
    random_file(server_root / "big.bin", 64 * 1024 * 1024)
    connection = Control(start_server().address).login()
    try:
        port = connection.pasv()
        data = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert connection.ask("RETR big.bin")[0] == 150
        data.recv(65536)
        reset(data)
        code, text = connection.reply()
        assert code == 426, text
        assert connection.ask("NOOP")[0] == 200
    finally:
        connection.close()


def test_client_resets_the_data_connection_mid_upload(start_server, server_root):
    connection = Control(start_server().address).login()
    try:
        port = connection.pasv()
        data = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert connection.ask("STOR up.bin")[0] == 150
        data.sendall(os.urandom(1_000_000))
        reset(data)
        code, text = connection.reply()
        assert code == 426, text
        assert names(server_root) == []
        assert connection.ask("NOOP")[0] == 200
    finally:
        connection.close()


# --- killed processes ------------------------------------------------------------

def test_client_killed_mid_get_the_server_reports_it_and_goes_on(faulty_server, server_root, client_dir):
    digest = random_file(server_root / "data.bin", 4_000_000)
    server = faulty_server("--fault-delay", "0.02")         # about 1.2 s for the whole file
    client = start_client(server, client_dir, "get data.bin")
    try:
        assert wait_for(lambda: any(p.stat().st_size > 0 for p in partial_files(client_dir)))
    finally:
        client.kill()
        client.communicate()
    assert wait_for(lambda: "RETR /data.bin" in server.stderr())
    assert "aborted" in server.stderr()
    assert not (client_dir / "data.bin").exists()
    # The server is unharmed and still serves the file whole.
    (client_dir / "again").mkdir()
    result = run_client(server.host, server.port, ["get data.bin", "quit"], client_dir / "again")
    assert result.returncode == 0
    assert hashlib.sha256((client_dir / "again" / "data.bin").read_bytes()).hexdigest() == digest


def test_client_killed_mid_put_the_server_keeps_nothing(faulty_server, server_root, client_dir):
    random_file(client_dir / "data.bin", 16_000_000)
    server = faulty_server("--fault-delay", "0.01")
    client = start_client(server, client_dir, "put data.bin")
    try:
        assert wait_for(lambda: any(p.stat().st_size > 0 for p in partial_files(server_root)))
    finally:
        client.kill()
        client.communicate()
    assert wait_for(lambda: "STOR /data.bin" in server.stderr())
    assert wait_for(lambda: names(server_root) == [])
    assert server.alive()


def test_server_killed_mid_put_the_client_says_so(faulty_server, server_root, client_dir):
    random_file(client_dir / "data.bin", 16_000_000)
    server = faulty_server("--fault-delay", "0.01")
    client = start_client(server, client_dir, "put data.bin", "quit")
    assert wait_for(lambda: any(p.stat().st_size > 0 for p in partial_files(server_root)))
    server.process.send_signal(signal.SIGKILL)
    out, _ = client.communicate(timeout=30)
    assert client.returncode != 0
    assert b"connection lost" in out
    assert not (server_root / "data.bin").exists()         # a .part may stay: the server had no chance


def test_server_killed_mid_get_the_client_keeps_nothing(faulty_server, server_root, client_dir):
    random_file(server_root / "data.bin", 4_000_000)
    server = faulty_server("--fault-delay", "0.02")
    client = start_client(server, client_dir, "get data.bin", "quit")
    assert wait_for(lambda: any(p.stat().st_size > 0 for p in partial_files(client_dir)))
    server.process.send_signal(signal.SIGKILL)
    out, _ = client.communicate(timeout=30)
    assert client.returncode != 0
    assert b"connection lost" in out
    assert names(client_dir) == []


# --- a full disk ------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, so that writes run out of space for real (ENOSPC)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_on_the_server_gets_452_and_keeps_nothing(faulty_server, small_disk, client_dir):
    random_file(client_dir / "data.bin", 3_000_000)
    (small_disk / "root").mkdir()
    server = faulty_server(root=small_disk / "root")
    result = run_client(server.host, server.port, ["put data.bin", "ls", "quit"], client_dir)
    assert result.returncode == 1
    assert "452 " in result.stdout
    assert names(small_disk / "root") == []
    assert "221 " in result.stdout                          # the session went on


def test_full_disk_on_the_client_is_reported_and_keeps_nothing(faulty_server, server_root, small_disk):
    random_file(server_root / "data.bin", 3_000_000)
    server = faulty_server()
    result = run_client(server.host, server.port, ["get data.bin", "ls", "quit"], small_disk)
    assert result.returncode == 1
    assert "no space left" in result.stdout.lower()
    assert names(small_disk) == []
    assert "data.bin" in result.stdout.split("ftp> ls", 1)[1]
    assert "221 " in result.stdout
