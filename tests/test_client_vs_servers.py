"""Our client against other people's servers (issues 10 and 14): pyftpdlib,
vsftpd and proftpd, each started on a loopback port by tests/servers.py.

The shell runs as a user runs it (a subprocess fed commands), so each test
also checks what the user reads: the integrity verdict after every put,
get and reget. proftpd offers HASH (mod_digest) with SHA-256 selected and a
multi-line 213 reply; vsftpd and pyftpdlib offer SIZE only.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from conftest import run_client
from rogue_server import RogueServer
from servers import ServerUnavailable, start_proftpd, start_pyftpdlib, start_vsftpd
from solutions.ftpclient import FtpClient, FtpError

# proftpd with mod_digest, so it offers HASH.
LAUNCHERS = {"pyftpdlib": start_pyftpdlib, "vsftpd": start_vsftpd,
             "proftpd": lambda root, workdir: start_proftpd(root, workdir, modules=("mod_digest.c",))}
SERVERS = list(LAUNCHERS)
# What a verified transfer says, per server: HASH where the server has it.
MATCHES = {"proftpd": "integrity: SHA-256 matches", "vsftpd": "integrity: size matches",
           "pyftpdlib": "integrity: size matches"}


def launch(name: str, base):
    """Start server ``name`` on ``base/root``; a missing program is a skip with its reason."""
    root = base / "root"
    root.mkdir()
    try:
        return LAUNCHERS[name](root, base / "server-output")
    except ServerUnavailable as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="module", params=SERVERS)
def daemon(request, tmp_path_factory):
    with launch(request.param, tmp_path_factory.mktemp(request.param)) as running:
        yield running


@pytest.fixture
def client(daemon):
    client = FtpClient(*daemon.address, timeout=15)
    client.connect()
    client.login()
    if daemon.upload_dir:
        client.expect("CWD", daemon.upload_dir)
    yield client
    client.close()


def serve(daemon, name: str, data: bytes):
    path = daemon.upload_root / name
    path.write_bytes(data)
    path.chmod(0o644)           # the daemons read as an unprivileged user
    return path


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.timeout(120)
def test_put_get_ls_and_reget_with_their_verdicts_in_both_modes(daemon, tmp_path):
    workdir = tmp_path / f"client-{daemon.name}"
    workdir.mkdir()
    down = os.urandom(700_000)
    serve(daemon, "down.bin", down)
    serve(daemon, "long.bin", down * 2)
    (workdir / "up.bin").write_bytes(os.urandom(500_000))
    (workdir / "long.bin").write_bytes((down * 2)[:300_000])    # an interrupted download
    cd = [f"cd {daemon.upload_dir}"] if daemon.upload_dir else []
    result = run_client(*daemon.address, [*cd, "put up.bin", "get down.bin", "ls", "reget long.bin",
                                          "passive", "put up.bin up2.bin", "get down.bin down2.bin", "ls",
                                          "quit"], workdir, timeout=90)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert out.count(MATCHES[daemon.name]) == 5, out
    assert "MISMATCH" not in out and "not checked" not in out
    assert (daemon.upload_root / "up.bin").read_bytes() == (workdir / "up.bin").read_bytes()
    assert (daemon.upload_root / "up2.bin").read_bytes() == (workdir / "up.bin").read_bytes()
    assert (workdir / "down.bin").read_bytes() == down == (workdir / "down2.bin").read_bytes()
    assert (workdir / "long.bin").read_bytes() == down * 2
    assert "1400000 bytes received" not in out and f"{1_400_000 - 300_000} bytes received" in out
    assert out.count("down.bin") >= 4 and "up2.bin" in out


def test_folders_rename_delete_size_and_modtime(client, daemon):
    serve(daemon, "a.txt", b"12345")
    client.mkdir("new")
    assert (daemon.upload_root / "new").is_dir()
    client.rename("a.txt", "new/b.txt")
    assert (daemon.upload_root / "new" / "b.txt").read_bytes() == b"12345"
    assert client.size("new/b.txt") == 5
    stamp = client.mtime("new/b.txt")
    assert len(stamp) >= 14 and stamp[:14].isdigit()
    with pytest.raises(FtpError) as not_empty:
        client.rmdir("new")
    assert not_empty.value.reply.code == 550
    client.delete("new/b.txt")
    client.rmdir("new")
    assert not {"new", "a.txt"} & set(os.listdir(daemon.upload_root))
    with pytest.raises(FtpError):
        client.delete("missing.txt")


def test_mget_and_mput_with_globs_and_lcd(daemon, tmp_path):
    workdir = tmp_path / f"client-{daemon.name}"
    (workdir / "out").mkdir(parents=True)
    for name in ("one.csv", "two.csv", "skip.txt"):
        serve(daemon, name, name.encode() * 100)
    for name in ("x.dat", "y.dat", "z.txt"):
        (workdir / name).write_bytes(name.encode() * 100)
    cd = [f"cd {daemon.upload_dir}"] if daemon.upload_dir else []
    result = run_client(*daemon.address, [*cd, "mput *.dat", "lcd out", "mget *.csv", "quit"], workdir, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(os.listdir(workdir / "out")) == ["one.csv", "two.csv"]
    assert (workdir / "out" / "one.csv").read_bytes() == b"one.csv" * 100
    assert (daemon.upload_root / "x.dat").read_bytes() == b"x.dat" * 100
    assert not (daemon.upload_root / "z.txt").exists()
    assert result.stdout.count(MATCHES[daemon.name]) == 4
    for name in ("one.csv", "two.csv", "skip.txt", "x.dat", "y.dat"):
        (daemon.upload_root / name).unlink()


def test_proftpd_hash_selects_sha256_and_reads_the_multiline_reply(tmp_path):
    with launch("proftpd", tmp_path) as daemon:
        assert any(line.strip().startswith("HASH") for line in _feat(daemon)), "mod_digest loaded, no HASH"
        data = os.urandom(100_000)
        serve(daemon, "f.bin", data)
        sent = []
        client = FtpClient(*daemon.address, timeout=15, on_reply=lambda reply: None)
        original = client.command
        client.command = lambda verb, arg="": (sent.append(f"{verb} {arg}".strip()), original(verb, arg))[1]
        client.connect()
        client.login()
        assert "OPTS HASH SHA-256" in sent
        local = tmp_path / "f.bin"
        local.write_bytes(data)
        verdict = client.verify(str(local), "f.bin")
        assert (verdict.method, verdict.ok, verdict.remote) == ("HASH", True, digest(data))
        client.quit()


def _feat(daemon) -> list[str]:
    client = FtpClient(*daemon.address, timeout=15)
    client.connect()
    try:
        return client.command("FEAT").text.split("\n")
    finally:
        client.close()


# --- HASH that fails falls back to SIZE; no SHA-256 on offer: SIZE ----------------

def _hash_server(features: str, hash_answer: str, size: int):
    def behave(control, server):
        server.log_in(control, features=features)
        while line := server.command():
            verb = line.split(" ")[0].upper()
            if verb == "HASH":
                server.send(control, hash_answer)
            elif verb == "SIZE":
                server.send(control, f"213 {size}\r\n")
            elif verb == "OPTS":
                server.send(control, "501 no such algorithm\r\n")
            elif verb == "QUIT":
                server.send(control, "221 bye\r\n")
                return
            else:
                server.send(control, "502 no\r\n")
    return behave


@pytest.mark.parametrize("features, hash_answer", [
    (" HASH SHA-256\r\n SIZE\r\n", "451 cannot hash now\r\n"),
    (" HASH SHA-256\r\n SIZE\r\n", "213 garbage\r\n"),
    (" HASH SHA-1*;MD5\r\n SIZE\r\n", "213 SHA-1 0-5 aaaa f\r\n"),
], ids=["hash-fails", "hash-unreadable", "no-sha256"])
def test_verify_falls_back_to_size_when_hash_cannot_answer(tmp_path, features, hash_answer):
    local = tmp_path / "f"
    local.write_bytes(b"12345")
    with RogueServer(_hash_server(features, hash_answer, 5)) as rogue:
        client = FtpClient(*rogue.address, timeout=10)
        client.connect()
        client.login()
        verdict = client.verify(str(local), "f")
        client.quit()
    assert rogue.error is None
    assert (verdict.method, verdict.ok) == ("SIZE", True)
