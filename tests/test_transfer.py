"""End to end over real loopback sockets: our client against our server."""

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_client
from solutions.ftpclient import FtpClient, FtpError

SIZES = {"empty": 0, "one-byte": 1, "ten-mib": 10 * 1024 * 1024}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def client(ftp_server):
    host, port = ftp_server.address
    client = FtpClient(host, port)
    client.connect()
    client.login()
    yield client
    client.close()


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
@pytest.mark.parametrize("name", list(SIZES))
def test_put_then_get_returns_the_same_bytes(client, server_root, tmp_path, name, passive):
    client.passive = passive
    original = tmp_path / f"{name}.bin"
    original.write_bytes(os.urandom(SIZES[name]))

    sent = client.put(str(original), f"{name}.bin")
    assert sent.bytes == SIZES[name]
    assert sha256(server_root / f"{name}.bin") == sha256(original)

    back = tmp_path / f"{name}.back"
    received = client.get(f"{name}.bin", str(back))
    assert received.bytes == SIZES[name]
    assert sha256(back) == sha256(original)

    verdict = client.verify(str(back), f"{name}.bin")
    assert (verdict.method, verdict.ok) == ("HASH", True)
    assert f"{name}.bin" in client.listing(names_only=True).split("\r\n")


def test_listing_shows_every_file_with_its_size(client, server_root):
    (server_root / "a.txt").write_bytes(b"12345")
    (server_root / "sub").mkdir()
    (server_root / ".hidden").write_bytes(b"x")
    long = client.listing()
    lines = long.strip().split("\r\n")
    assert len(lines) == 2
    assert lines[0].startswith("-rw") and lines[0].split()[4] == "5" and lines[0].endswith(" a.txt")
    assert lines[1].startswith("d") and lines[1].endswith(" sub")
    assert client.listing(names_only=True) == "a.txt\r\nsub\r\n"


def test_verify_notices_a_different_local_file(client, server_root, tmp_path):
    (server_root / "a.bin").write_bytes(b"server copy")
    local = tmp_path / "a.bin"
    local.write_bytes(b"server copz")
    verdict = client.verify(str(local), "a.bin")
    assert verdict.method == "HASH" and verdict.ok is False


def test_each_pasv_opens_a_new_port_and_the_control_connection_stays(client, server_root):
    (server_root / "f").write_bytes(b"data")
    control_port = client.control.getsockname()[1]
    ports = set()
    for _ in range(3):
        end = client.prepare_data_channel()     # PASV: a fresh listener each time
        ports.add(end.address[1])
        end.close()
    assert len(ports) == 3
    assert client.get("f", os.devnull).bytes == 4
    assert client.control.getsockname()[1] == control_port


def test_the_cmd_shell_end_to_end_in_both_modes(ftp_server, client_dir, server_root):
    host, port = ftp_server.address
    (client_dir / "up.bin").write_bytes(os.urandom(100_000))
    (server_root / "down.bin").write_bytes(os.urandom(70_000))
    result = run_client(host, port, ["put up.bin", "get down.bin", "ls", "passive",
                                     "put up.bin again.bin", "get down.bin down2.bin", "quit"], client_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("integrity: SHA-256 matches") == 4
    assert "221 Goodbye." in result.stdout
    assert sha256(server_root / "again.bin") == sha256(client_dir / "up.bin")
    assert sha256(client_dir / "down2.bin") == sha256(server_root / "down.bin")


def test_shell_reports_errors_and_goes_on_then_exits_nonzero(ftp_server, client_dir):
    host, port = ftp_server.address
    result = run_client(host, port, ["get missing.bin", "frobnicate", "put nothere.bin", "ls", "quit"], client_dir)
    assert result.returncode == 1
    assert result.stdout.count("550 missing.bin: no such file.") == 1     # once, not twice
    assert "?Invalid command: frobnicate" in result.stdout
    assert "nothere.bin: no such local file" in result.stdout
    assert "226 Transfer complete." in result.stdout and "221 Goodbye." in result.stdout
    assert not (client_dir / "missing.bin").exists()


def test_shell_says_so_when_the_server_goes_away(server_process, server_root, client_dir):
    server = server_process(server_root)
    client = subprocess.Popen([sys.executable, "-m", "solutions.client", server.host, str(server.port)],
                              cwd=client_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    client.stdin.write("pwd\n")
    client.stdin.flush()
    while "is the current directory" not in client.stdout.readline():
        pass
    server.stop()
    out, _ = client.communicate("ls\nls\n", timeout=20)
    assert client.returncode == 1
    assert "connection lost" in out


def test_cd_pwd_and_cdup_stay_inside_the_root(client, server_root):
    (server_root / "docs").mkdir()
    (server_root / "docs" / "n.txt").write_bytes(b"n")
    client.expect("CWD", "docs")
    assert '"/docs"' in client.expect("PWD").text
    assert client.listing(names_only=True) == "n.txt\r\n"
    client.expect("CDUP")
    client.expect("CDUP")          # at the root, CDUP stays at the root
    assert '"/"' in client.expect("PWD").text
    with pytest.raises(FtpError) as refused:
        client.expect("CWD", "nope")
    assert refused.value.reply.code == 550


@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal (pty), which only POSIX has")
def test_a_slow_transfer_on_a_terminal_shows_a_progress_bar(server_process, server_root, client_dir):
    import pty
    import select
    import time

    (server_root / "big.bin").write_bytes(os.urandom(3_000_000))
    # Slow the server's data channel so the transfer takes over a second.
    server = server_process(server_root, "--fault-delay", "0.03")
    pid, terminal = pty.fork()
    if pid == 0:                                       # the child: the client on a terminal
        os.chdir(client_dir)
        os.environ["PYTHONPATH"] = str(REPO_ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "solutions.client", server.host, str(server.port)])
    screen = b""

    def read_for(seconds):
        nonlocal screen
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if select.select([terminal], [], [], 0.1)[0]:
                try:
                    screen += os.read(terminal, 65536)
                except OSError:
                    return

    read_for(1.0)
    os.write(terminal, b"get big.bin\n")
    read_for(4.0)
    os.write(terminal, b"quit\n")
    read_for(1.0)
    os.waitpid(pid, 0)
    text = screen.decode(errors="replace")
    assert "3.0/3.0 MB" in text                        # the bar reached the whole file
    assert "SHA-256 matches" in text
    assert (client_dir / "big.bin").stat().st_size == 3_000_000


def test_get_into_a_device_writes_through_and_never_replaces_it(client, server_root):
    """Renaming a temporary file over /dev/null (as root) would replace the
    device with a plain file for every user of the machine."""
    (server_root / "f").write_bytes(b"data" * 1000)
    before = os.stat(os.devnull)
    assert client.get("f", os.devnull).bytes == 4000
    after = os.stat(os.devnull)
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert not [name for name in os.listdir(os.path.dirname(os.devnull)) if name.endswith(".part")]
