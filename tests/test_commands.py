"""The everyday FTP commands beyond put/get/ls (issue 14), driven by Python's
ftplib against the reference server on loopback: folders, delete, rename,
resume (REST), append, abort, machine listings (MLSD/MLST), MDTM, STAT, FEAT,
and where active-mode data connections come from."""

from __future__ import annotations

import ftplib
import io
import os
import re
import socket
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import pytest

from test_security import start_server  # noqa: F401 (a fixture)


@pytest.fixture
def ftp(start_server):
    server = start_server()
    client = ftplib.FTP()
    client.connect(*server.address, timeout=10)
    client.login()
    yield client
    client.close()


def download(ftp: ftplib.FTP, name: str, rest: int | None = None) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write, rest=rest)
    return out.getvalue()


# --- FEAT ------------------------------------------------------------------------

def test_feat_lists_every_extension(ftp):
    features = ftp.sendcmd("FEAT").splitlines()[1:-1]
    assert {f.strip() for f in features} >= {"REST STREAM", "MLST type*;size*;modify*;perm*;", "MDTM", "MFMT",
                                              "SIZE", "HASH SHA-256*", "EPSV", "EPRT", "UTF8"}
    assert all(f.startswith(" ") for f in features)            # RFC 2389: each indented by one space


# --- folders, delete, rename ----------------------------------------------------------

def test_mkd_cwd_rmd(ftp, server_root):
    assert ftp.mkd("new dir") == "/new dir"                     # 257 "/new dir" created.
    assert (server_root / "new dir").is_dir()
    ftp.cwd("new dir")
    assert ftp.mkd("sub") == "/new dir/sub"
    ftp.cwd("/")
    with pytest.raises(ftplib.error_perm, match="550.*not empty"):
        ftp.rmd("new dir")
    ftp.rmd("new dir/sub")
    ftp.rmd("new dir")
    assert not (server_root / "new dir").exists()
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.mkd("a/b/c")                                        # no parent: nothing made
    assert list(server_root.iterdir()) == []


def test_mkd_of_an_existing_name_and_rmd_of_a_file_get_550(ftp, server_root):
    (server_root / "f.txt").write_text("x")
    (server_root / "d").mkdir()
    for command in ("MKD d", "MKD f.txt", "RMD f.txt", "RMD missing"):
        with pytest.raises(ftplib.error_perm, match="550"):
            ftp.sendcmd(command)
    assert (server_root / "f.txt").read_text() == "x" and (server_root / "d").is_dir()


def test_sessions_making_one_folder_at_once_get_one_257_and_550_for_the_rest(start_server, server_root):
    # rclone makes a parent folder from several connections at once, and takes
    # 550 to mean "it is there already". A check before the mkdir lets several
    # sessions pass it; the later mkdirs must still answer 550, never 451.
    server = start_server(max_per_address=16)
    clients = []
    for _ in range(8):
        client = ftplib.FTP()
        client.connect(*server.address, timeout=10)
        client.login()
        clients.append(client)
    start = threading.Barrier(len(clients))
    codes = []

    def make(client):
        start.wait()
        try:
            codes.append(client.sendcmd("MKD shared")[:3])
        except ftplib.Error as refused:
            codes.append(str(refused)[:3])
    workers = [threading.Thread(target=make, args=(client,)) for client in clients]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for client in clients:
        client.close()
    assert sorted(codes) == ["257"] + ["550"] * 7
    assert (server_root / "shared").is_dir()


def test_rmd_never_removes_hidden_files(ftp, server_root):
    (server_root / "d").mkdir()
    (server_root / "d" / ".keep").write_text("private")
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.rmd("d")
    assert (server_root / "d" / ".keep").read_text() == "private"


def test_dele(ftp, server_root):
    (server_root / "f.txt").write_text("x")
    (server_root / "d").mkdir()
    assert ftp.delete("f.txt").startswith("250")
    assert not (server_root / "f.txt").exists()
    for name in ("f.txt", "d"):
        with pytest.raises(ftplib.error_perm, match="550"):
            ftp.delete(name)
    assert (server_root / "d").is_dir()


def test_rename_a_file_and_a_folder(ftp, server_root):
    (server_root / "a.txt").write_text("A")
    (server_root / "d").mkdir()
    ftp.rename("a.txt", "d/b.txt")
    assert (server_root / "d" / "b.txt").read_text() == "A" and not (server_root / "a.txt").exists()
    ftp.rename("d", "e")
    assert (server_root / "e" / "b.txt").read_text() == "A"
    with pytest.raises(ftplib.error_perm, match="553"):
        ftp.rename("e", "e/inside")                             # a folder into itself
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.rename("missing", "x")


def test_rnto_must_follow_rnfr_at_once(ftp, server_root):
    (server_root / "a.txt").write_text("A")
    with pytest.raises(ftplib.error_perm, match="503"):
        ftp.sendcmd("RNTO b.txt")                               # no RNFR
    assert ftp.sendcmd("RNFR a.txt").startswith("350")
    assert ftp.sendcmd("NOOP").startswith("200")                # cancels the rename
    with pytest.raises(ftplib.error_perm, match="503"):
        ftp.sendcmd("RNTO b.txt")
    assert sorted(p.name for p in server_root.iterdir()) == ["a.txt"]


# --- resume and append ---------------------------------------------------------------------

def test_rest_then_retr_sends_the_rest(ftp, server_root):
    data = os.urandom(300_000)
    (server_root / "f.bin").write_bytes(data)
    assert ftp.sendcmd("TYPE I").startswith("200")
    assert download(ftp, "f.bin", rest=100_000) == data[100_000:]
    assert download(ftp, "f.bin") == data                      # REST applies to one transfer only
    assert download(ftp, "f.bin", rest=len(data)) == b""
    with pytest.raises(ftplib.error_perm, match="554"):
        download(ftp, "f.bin", rest=len(data) + 1)
    assert ftp.sendcmd("REST 100").startswith("350 Restarting at 100")
    with pytest.raises(ftplib.error_perm, match="501"):
        ftp.sendcmd("REST -5")


def test_rest_then_stor_resumes_an_upload(ftp, server_root):
    data = os.urandom(200_000)
    (server_root / "f.bin").write_bytes(data[:50_000] + b"junk after the resume point")
    ftp.voidcmd("TYPE I")
    ftp.storbinary("STOR f.bin", io.BytesIO(data[50_000:]), rest=50_000)
    assert (server_root / "f.bin").read_bytes() == data
    assert not [p for p in server_root.iterdir() if p.name.startswith(".")]


def test_appe_appends_and_creates(ftp, server_root):
    (server_root / "log.txt").write_bytes(b"one\n")
    ftp.storbinary("APPE log.txt", io.BytesIO(b"two\n"))
    ftp.storbinary("APPE new.txt", io.BytesIO(b"first\n"))
    assert (server_root / "log.txt").read_bytes() == b"one\ntwo\n"
    assert (server_root / "new.txt").read_bytes() == b"first\n"


def test_a_broken_append_leaves_the_old_file_whole(start_server, server_root):
    """APPE without ALLO whose client dies: the real name keeps the old bytes."""
    (server_root / "log.txt").write_bytes(b"old contents\n")
    server = start_server()
    control = socket.create_connection(server.address, timeout=10)
    reader = control.makefile("rb")
    reader.readline()
    control.sendall(b"USER a\r\nPASS b\r\nEPSV\r\n")
    for _ in range(3):
        line = reader.readline()
    port = int(re.search(rb"\|\|\|(\d+)\|", line).group(1))
    data = socket.create_connection(("127.0.0.1", port), timeout=10)
    control.sendall(b"APPE log.txt\r\n")
    assert reader.readline().startswith(b"150")
    data.sendall(b"x" * 100_000)
    control.close()                                             # the client dies
    reader.close()
    data.close()
    time.sleep(0.3)
    assert (server_root / "log.txt").read_bytes() == b"old contents\n"
    assert wait_no_partials(server_root)


def wait_no_partials(root: Path, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in root.rglob(".*.part")]:
            return True
        time.sleep(0.02)
    return False


# --- ABOR ----------------------------------------------------------------------------------

def test_ftplib_abort_mid_download_gets_426_then_226_and_the_session_goes_on(ftp, server_root):
    """ftplib's abort() sends ABOR with its last byte as TCP urgent data
    (MSG_OOB) and reads the answer without reading the data connection."""
    (server_root / "big.bin").write_bytes(os.urandom(64 * 1024 * 1024))
    ftp.voidcmd("TYPE I")
    data = ftp.transfercmd("RETR big.bin")
    assert len(data.recv(8192)) > 0                              # the first block arrived
    reply = ftp.abort()
    assert reply.startswith("426"), reply
    assert ftp.voidresp().startswith("226")                      # then ABOR's own answer
    data.close()
    assert ftp.sendcmd("NOOP").startswith("200")
    assert download(ftp, "big.bin")[:10] == (server_root / "big.bin").read_bytes()[:10]


def test_abort_mid_upload_keeps_nothing(ftp, server_root):
    ftp.voidcmd("TYPE I")
    data = ftp.transfercmd("STOR up.bin")
    data.sendall(b"x" * 1_000_000)
    reply = ftp.abort()
    assert reply.startswith("426"), reply
    assert ftp.voidresp().startswith("226")
    data.close()
    assert ftp.sendcmd("NOOP").startswith("200")
    assert not (server_root / "up.bin").exists()
    assert wait_no_partials(server_root)


def test_abor_with_telnet_ip_and_synch_before_it(ftp):
    """RFC 959 4.1.3 (and lftp): IAC IP, then IAC DM as urgent data, then ABOR."""
    ftp.sock.sendall(b"\xff\xf4\xff")
    ftp.sock.sendall(b"\xf2", socket.MSG_OOB)
    ftp.sock.sendall(b"ABOR\r\n")
    assert ftp.getresp()[:3] in ("225", "226")
    assert ftp.sendcmd("NOOP").startswith("200")


def test_abor_with_no_transfer(ftp):
    assert ftp.sendcmd("ABOR")[:3] in ("225", "226")
    ftp.sendcmd("PASV")
    assert ftp.sendcmd("ABOR").startswith("225")                # the passive listener is dropped
    with pytest.raises(ftplib.error_temp, match="425"):
        ftp.sendcmd("LIST")


# --- machine listings, MDTM, STAT -------------------------------------------------------------

def test_mlsd_matches_the_files_on_disk(ftp, server_root):
    (server_root / "a.txt").write_bytes(b"12345")
    (server_root / "sub").mkdir()
    (server_root / ".hidden").write_text("no")
    os.utime(server_root / "a.txt", (0, 1_700_000_000))
    entries = dict(ftp.mlsd())
    assert set(entries) == {"a.txt", "sub"}
    assert entries["a.txt"] == {"type": "file", "size": "5", "modify": "20231114221320", "perm": "rawdf"}
    assert entries["sub"]["type"] == "dir" and entries["sub"]["perm"] == "elcmpdf"
    with pytest.raises(ftplib.error_perm, match="501"):
        list(ftp.mlsd("a.txt"))                                  # MLSD lists folders only


def test_mlst_mdtm_stat(ftp, server_root):
    (server_root / "a.txt").write_bytes(b"12345")
    os.utime(server_root / "a.txt", (0, 1_700_000_000))
    lines = ftp.sendcmd("MLST a.txt").splitlines()
    assert lines[0].startswith("250-") and lines[-1].startswith("250 ")
    assert lines[1] == " type=file;size=5;modify=20231114221320;perm=rawdf; /a.txt"
    assert ftp.sendcmd("MDTM a.txt") == "213 20231114221320"
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.sendcmd("MDTM missing")
    assert ftp.sendcmd("MFMT 20200102030405 a.txt") == "213 Modify=20200102030405; a.txt"
    assert ftp.sendcmd("MDTM a.txt") == "213 20200102030405"
    with pytest.raises(ftplib.error_perm, match="501"):
        ftp.sendcmd("MFMT yesterday a.txt")
    status = ftp.sendcmd("STAT")
    assert status.startswith("211-") and "logged in" in status
    listing = ftp.sendcmd("STAT /")
    assert listing.startswith("213-") and "a.txt" in listing


# --- read-only, dot files and control characters hold for every command --------------------------

WRITES = ["STOR x", "APPE x", "DELE a.txt", "MKD d", "RMD sub", "RNFR a.txt", "MFMT 20200102030405 a.txt"]


@pytest.mark.parametrize("command", WRITES)
def test_read_only_refuses_every_write(start_server, server_root, command):
    (server_root / "a.txt").write_text("A")
    (server_root / "sub").mkdir()
    server = start_server(read_only=True)
    with ftplib.FTP() as ftp:
        ftp.connect(*server.address, timeout=10)
        ftp.login()
        ftp.sendcmd("PASV")
        with pytest.raises(ftplib.error_perm, match="550.*read-only"):
            ftp.sendcmd(command)
        assert download(ftp, "a.txt") == b"A"                      # reading still works
        assert dict(ftp.mlsd())["a.txt"]["perm"] == "r"
    assert sorted(p.name for p in server_root.iterdir()) == ["a.txt", "sub"]


@pytest.mark.parametrize("command", ["MKD .git", "DELE .bashrc", "RNFR .bashrc", "MDTM .bashrc",
                                     "MLST .bashrc", "RMD .ssh", "MKD a\x1bb", "MKD a\x01b", "MKD a\x7fb"])
def test_hidden_and_control_character_names_are_refused(ftp, server_root, command):
    (server_root / ".bashrc").write_text("secret")
    (server_root / ".ssh").mkdir()
    with pytest.raises(ftplib.error_perm, match="553"):
        ftp.sendcmd(command)
    assert sorted(p.name for p in server_root.iterdir()) == [".bashrc", ".ssh"]


def test_rename_into_a_dot_name_is_refused(ftp, server_root):
    (server_root / "a.txt").write_text("A")
    ftp.sendcmd("RNFR a.txt")
    with pytest.raises(ftplib.error_perm, match="553"):
        ftp.sendcmd("RNTO .a.txt")
    assert sorted(p.name for p in server_root.iterdir()) == ["a.txt"]


def test_nothing_outside_the_root_is_touched(ftp, server_root):
    outside = server_root.parent / "outside"
    outside.mkdir()
    (outside / "f").write_text("keep")
    os.symlink(outside, server_root / "link")
    for command in ("MKD ../x", "DELE ../outside/f", "RMD ../outside", "RNFR ../outside/f",
                    "DELE link/f", "MKD link/x", "MDTM ../outside/f", "MLST ../outside"):
        with pytest.raises(ftplib.error_perm, match="55[03]"):
            ftp.sendcmd(command)
    assert sorted(p.name for p in outside.iterdir()) == ["f"]


# --- active mode: data connections come from port 20 (ftp-data) ------------------------------------

def retr_actively(ftp: ftplib.FTP, announce) -> int:
    """RETR f.txt ("hello") in active mode, announced by ``announce(port)``
    (a PORT or EPRT command); returns the port the data connection came from."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    with listener:
        assert ftp.sendcmd(announce(listener.getsockname()[1])).startswith("200")
        ftp.putcmd("RETR f.txt")
        data, peer = listener.accept()
        with data:
            assert data.recv(100) == b"hello"
        assert ftp.getresp().startswith("150")
        ftp.voidresp()
        return peer[1]


def active_source_port(ftp: ftplib.FTP, server_root: Path) -> int:
    return retr_actively(ftp, lambda port: f"PORT 127,0,0,1,{port >> 8},{port & 0xFF}")


def test_active_data_connections_come_from_port_20(ftp, server_root):
    """Port 20, ftp-data, as vsftpd does: how Wireshark links a PORT data
    connection to its control connection. Only root may bind it; anyone
    else connects from an ephemeral port."""
    (server_root / "f.txt").write_text("hello")
    expected = (lambda port: port == 20) if os.geteuid() == 0 else (lambda port: port >= 1024)
    assert expected(active_source_port(ftp, server_root))
    assert expected(active_source_port(ftp, server_root))        # again, while the first is in TIME_WAIT


def test_active_mode_falls_back_when_port_20_is_taken(start_server, server_root):
    (server_root / "f.txt").write_text("hello")
    server = start_server()
    blocker = socket.socket()
    try:
        try:
            # SO_REUSEADDR: earlier tests' connections from port 20 may be in TIME_WAIT.
            blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            blocker.bind(("127.0.0.1", 20))
            blocker.listen(1)
        except OSError:
            pytest.skip("port 20 is not ours to take (not root, or another program holds it)")
        with ftplib.FTP() as ftp:
            ftp.connect(*server.address, timeout=10)
            ftp.login()
            assert active_source_port(ftp, server_root) != 20
    finally:
        blocker.close()


def test_eprt_with_the_unspecified_address_means_the_client(ftp, server_root):
    """lftp over IPv6 sends EPRT |2|::|port|; vsftpd takes it as the client's address."""
    (server_root / "f.txt").write_text("hello")
    retr_actively(ftp, lambda port: f"EPRT |2|::|{port}|")
    with pytest.raises(ftplib.error_perm, match="501 Illegal EPRT"):
        ftp.sendcmd("EPRT |1|127.0.0.2|5000|")
    with pytest.raises(ftplib.error_perm, match="501 Illegal PORT"):
        ftp.sendcmd("PORT 127,0,0,2,19,136")


def test_a_failed_command_between_pasv_and_retr_keeps_the_data_connection(ftp, server_root):
    """curl sends EPSV, SIZE, REST, RETR: a 550 to SIZE must not lose the passive port."""
    (server_root / "f.txt").write_text("hello")
    ftp.voidcmd("TYPE I")
    host, port = ftplib.parse227(ftp.sendcmd("PASV"))
    for command in ("SIZE missing", "MDTM missing", "MKD f.txt", "REST 1"):
        with pytest.raises(ftplib.error_perm) if command != "REST 1" else nullcontext():
            ftp.sendcmd(command)
    with socket.create_connection((host, port), timeout=10) as data:
        assert ftp.sendcmd("RETR f.txt").startswith("150")
        assert data.recv(100) == b"ello"
    assert ftp.voidresp().startswith("226")
