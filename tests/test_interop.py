"""Interoperability with FTP software nobody here wrote.

Python's ftplib and curl talk to our server; our client talks to pyftpdlib's
server. If any of these fails, our protocol is not the FTP it claims to be.
"""

import ftplib
import hashlib
import io
import os
import shutil
import socket
import subprocess

import pytest

from conftest import run_client

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed (.ci/run installs it)")


@pytest.fixture
def ftp(ftp_server):
    host, port = ftp_server.address
    session = ftplib.FTP()
    session.connect(host, port, timeout=10)
    session.login()
    yield session
    session.close()


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_ftplib_round_trip(ftp, server_root, passive):
    ftp.set_pasv(passive)
    payload = os.urandom(300_000)
    assert ftp.storbinary("STOR up.bin", io.BytesIO(payload)).startswith("226")
    assert (server_root / "up.bin").read_bytes() == payload
    received = bytearray()
    assert ftp.retrbinary("RETR up.bin", received.extend).startswith("226")
    assert bytes(received) == payload
    assert ftp.size("up.bin") == len(payload)
    assert ftp.nlst() == ["up.bin"]
    lines = []
    ftp.dir(lines.append)
    assert len(lines) == 1 and lines[0].split()[4] == str(len(payload)) and lines[0].endswith("up.bin")
    assert ftp.sendcmd("HASH up.bin") == f"213 SHA-256 0-{len(payload)} {hashlib.sha256(payload).hexdigest()} up.bin"
    assert ftp.quit().startswith("221")


def test_ftplib_sees_errors_as_errors(ftp):
    with pytest.raises(ftplib.error_perm, match="^550"):
        ftp.retrbinary("RETR nope", lambda _: None)
    with pytest.raises(ftplib.error_perm, match="^502"):
        ftp.sendcmd("SITE CHMOD 777 x")
    assert ftp.voidcmd("NOOP").startswith("200")      # the session goes on


def test_ftplib_over_ipv6_uses_epsv_and_eprt(server_root):
    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6 loopback")
    from solutions.filesystem import Root
    from solutions.server import Server
    from solutions.session import ServerConfig
    try:
        server = Server("::1", 0, ServerConfig(Root(server_root))).start()
    except OSError as err:
        pytest.skip(f"cannot listen on ::1: {err}")
    try:
        (server_root / "six.bin").write_bytes(b"v6" * 1000)
        session = ftplib.FTP()
        session.connect("::1", server.address[1], timeout=10)
        session.login()
        for passive in (True, False):
            session.set_pasv(passive)
            data = bytearray()
            session.retrbinary("RETR six.bin", data.extend)
            assert bytes(data) == b"v6" * 1000
        session.quit()
    finally:
        server.shutdown()


@needs_curl
def test_curl_download_upload_and_listing(ftp_server, server_root, tmp_path):
    host, port = ftp_server.address
    url = f"ftp://{host}:{port}"
    payload = os.urandom(1_000_000)
    (server_root / "down.bin").write_bytes(payload)
    local = tmp_path / "from-curl.bin"
    subprocess.run([CURL, "-sS", "-o", str(local), f"{url}/down.bin"], check=True, timeout=30)
    assert local.read_bytes() == payload

    upload = tmp_path / "to-server.bin"
    upload.write_bytes(payload[::-1])
    subprocess.run([CURL, "-sS", "-T", str(upload), f"{url}/up.bin"], check=True, timeout=30)
    assert (server_root / "up.bin").read_bytes() == payload[::-1]

    listing = subprocess.run([CURL, "-sS", f"{url}/"], check=True, capture_output=True, text=True, timeout=30).stdout
    assert [line.split()[-1] for line in listing.splitlines()] == ["down.bin", "up.bin"]
    names = subprocess.run([CURL, "-sS", "--list-only", f"{url}/"], check=True, capture_output=True,
                           text=True, timeout=30).stdout
    assert names.split() == ["down.bin", "up.bin"]


@needs_curl
def test_curl_active_mode(ftp_server, server_root, tmp_path):
    host, port = ftp_server.address
    (server_root / "a.bin").write_bytes(b"active" * 10000)
    local = tmp_path / "a.bin"
    subprocess.run([CURL, "-sS", "-P", "-", "-o", str(local), f"ftp://{host}:{port}/a.bin"], check=True, timeout=30)
    assert local.read_bytes() == b"active" * 10000


@needs_curl
def test_curl_gets_550_for_a_missing_file(ftp_server):
    host, port = ftp_server.address
    result = subprocess.run([CURL, "-sS", f"ftp://{host}:{port}/missing.bin"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 78      # curl: "the resource referenced in the URL does not exist"


@pytest.mark.parametrize("mode", [[], ["--active"]], ids=["passive", "active"])
def test_our_client_against_pyftpdlib_falls_back_to_size(pyftpdlib_process, server_root, client_dir, mode):
    host, port = pyftpdlib_process.address
    (client_dir / "mine.bin").write_bytes(os.urandom(200_000))
    (server_root / "theirs.bin").write_bytes(os.urandom(150_000))
    result = run_client(host, port, ["put mine.bin", "get theirs.bin", "ls", "quit"], client_dir, *mode)
    assert result.returncode == 0, result.stdout + result.stderr
    # pyftpdlib has no HASH, so the client checks sizes and says so.
    assert result.stdout.count("integrity: size matches the server's") == 2
    assert "SHA-256" not in result.stdout.split("211 End")[-1]
    assert (server_root / "mine.bin").read_bytes() == (client_dir / "mine.bin").read_bytes()
    assert (client_dir / "theirs.bin").read_bytes() == (server_root / "theirs.bin").read_bytes()
    assert "theirs.bin" in result.stdout and "mine.bin" in result.stdout
