"""Everyday FTP software against our server (issue 14): folders, resume, abort, machine listings.

Each test runs a real client (lftp, rclone, curl, Python's ftplib) against
the reference server started as a process on a loopback port, in passive and
(where the client has it) active mode, and compares what arrived with what
was sent, byte for byte.

The tests are checked against other servers first, so a failure means our
server and not the test:  FTPKIT_INTEROP_SERVER=proftpd pytest tests/test_interop_clients.py
(or pyftpdlib, which rclone cannot use: it answers 501 where rclone expects
550 for a missing folder, so rclone never makes one).
"""

from __future__ import annotations

import calendar
import ftplib
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from servers import LAUNCHERS, ServerUnavailable, start_ftpkit

SERVER_KIND = os.environ.get("FTPKIT_INTEROP_SERVER", "ftpkit")
LFTP, RCLONE, CURL = shutil.which("lftp"), shutil.which("rclone"), shutil.which("curl")
needs_lftp = pytest.mark.skipif(LFTP is None, reason="lftp is not installed (.ci/run installs it)")
needs_rclone = pytest.mark.skipif(RCLONE is None, reason="rclone is not installed (.ci/run installs it)")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed (.ci/run installs it)")

MODES = pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
TOOL_TIMEOUT = 60


@pytest.fixture
def server(server_root, tmp_path):
    """The server under test (ours unless FTPKIT_INTEROP_SERVER names another) on ``server_root``."""
    try:
        running = LAUNCHERS[SERVER_KIND](server_root, tmp_path / "server-output")
    except ServerUnavailable as missing:
        pytest.skip(str(missing))
    with running:
        yield running
    assert_no_part_files(server_root)


def assert_no_part_files(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if p.name.endswith(".part")]
    assert not leftovers, f"partial files left on the server: {leftovers}"


def url(server, path: str = "") -> str:
    return f"ftp://{server.host}:{server.port}/{path}"


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a client; its whole output goes into the assertion message when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT, **kwargs)
    assert result.returncode == 0, (f"{' '.join(command)} exited with {result.returncode}\n"
                                    f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")
    return result


# --- a tree with awkward names -------------------------------------------------------

# Dot files are left out on purpose: the server neither serves nor stores them (issue 10).
TREE_FILES = {
    "plain.bin": os.urandom(200_000),
    "name with spaces.txt": b"spaces in the name\n",
    "\u00fcn\u00efc\u00f6d\u00e9 \u540d\u524d.txt": "unicode name\n".encode(),
    "-leading-dash.txt": b"a name an option parser could take for a flag\n",
    "sub/deeper/nested.bin": os.urandom(50_000),
    "sub/space dir/x.txt": b"inside a folder with a space\n",
    "sub/empty.txt": b"",
}
TREE_EMPTY_FOLDERS = ["empty-folder", "sub/also empty"]


def make_tree(top: Path) -> Path:
    for name, content in TREE_FILES.items():
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        (top / name).write_bytes(content)
    for name in TREE_EMPTY_FOLDERS:
        (top / name).mkdir(parents=True, exist_ok=True)
    return top


def describe_tree(top: Path) -> dict[str, str]:
    """Relative path -> "folder" or the SHA-256 of the file: two equal trees describe equally."""
    description = {}
    for path in sorted(top.rglob("*")):
        relative = path.relative_to(top).as_posix()
        description[relative] = "folder" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return description


# --- lftp mirror and mirror -R ------------------------------------------------------------

def lftp(server, passive: bool, *commands: str, cwd: Path) -> subprocess.CompletedProcess:
    settings = [
        "set cmd:fail-exit yes",                 # a failed command ends lftp with status 1
        "set net:max-retries 1", "set net:timeout 15", "set net:reconnect-interval-base 1",
        f"set ftp:passive-mode {'on' if passive else 'off'}",
        "set ftp:ssl-allow no",                  # plain FTP: the kit has no TLS
        "set ftp:charset utf-8",
    ]
    script = "; ".join(settings + list(commands) + ["quit"])
    return run([LFTP, "-u", "anonymous,interop@example.org", "-e", script,
                f"ftp://{server.host}:{server.port}"], cwd=cwd)


@needs_lftp
@MODES
def test_lftp_mirror_uploads_and_downloads_a_tree(server, server_root, tmp_path, passive):
    local = make_tree(tmp_path / "local")
    lftp(server, passive, "mirror -R --no-perms local tree", cwd=tmp_path)
    assert describe_tree(server_root / "tree") == describe_tree(local)

    lftp(server, passive, "mirror --no-perms tree copy", cwd=tmp_path)
    assert describe_tree(tmp_path / "copy") == describe_tree(local)
    assert (tmp_path / "copy" / "empty-folder").is_dir()


# --- rclone sync and check, both ways ------------------------------------------------------

def rclone_remote(server) -> str:
    # rclone takes the password only obscured, even on the command line.
    obscured = run([RCLONE, "obscure", "interop@example.org"]).stdout.strip()
    return f":ftp,host={server.host},port={server.port},user=anonymous,pass={obscured}:"


def rclone(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, RCLONE_CONFIG=str(tmp_path / "rclone.conf"))   # no config of the machine's
    # By default rclone opens a connection per checker and per transfer (up
    # to 12), more than our server lets one address hold (--max-per-ip 4):
    # the rest get 421. Against such a server rclone is told to share 4
    # connections (with fewer checkers than connections, or it deadlocks).
    sharing = ["--ftp-concurrency", "4", "--checkers", "2", "--transfers", "2"]
    return run([RCLONE, "--contimeout", "10s", "--timeout", "20s", "--retries", "1",
                "--low-level-retries", "2", *sharing, *arguments], env=env, cwd=tmp_path)


@needs_rclone
def test_rclone_sync_then_check_both_ways(server, server_root, tmp_path):
    # rclone's FTP backend is passive only.
    local = make_tree(tmp_path / "local")
    remote = rclone_remote(server)
    rclone(tmp_path, "sync", "--create-empty-src-dirs", str(local), remote + "tree")
    rclone(tmp_path, "check", "--download", str(local), remote + "tree")      # compares the bytes
    assert describe_tree(server_root / "tree") == describe_tree(local)

    (server_root / "tree" / "added on the server.bin").write_bytes(os.urandom(30_000))
    (server_root / "tree" / "plain.bin").unlink()
    rclone(tmp_path, "sync", "--create-empty-src-dirs", remote + "tree", str(tmp_path / "back"))
    rclone(tmp_path, "check", "--download", remote + "tree", str(tmp_path / "back"))
    assert describe_tree(tmp_path / "back") == describe_tree(server_root / "tree")

    # And a sync that deletes: the server's extra file goes when the local tree is synced back.
    rclone(tmp_path, "sync", "--create-empty-src-dirs", str(local), remote + "tree")
    assert describe_tree(server_root / "tree") == describe_tree(local)


# --- curl: resume and folders on upload ----------------------------------------------------------

@needs_curl
@MODES
def test_curl_resumes_an_interrupted_download(server, server_root, tmp_path, passive):
    payload = os.urandom(300_000)
    (server_root / "big.bin").write_bytes(payload)
    local = tmp_path / "big.bin"
    mode = [] if passive else ["-P", "-"]
    # The interrupted download: only the first 100 000 bytes arrived.
    run([CURL, "-sS", *mode, "-r", "0-99999", "-o", str(local), url(server, "big.bin")])
    assert local.read_bytes() == payload[:100_000]
    resumed = run([CURL, "-sS", "-v", *mode, "-C", "-", "-o", str(local), url(server, "big.bin")])
    assert "> REST 100000" in resumed.stderr          # it really resumed, not started again
    assert local.read_bytes() == payload


@needs_curl
@MODES
def test_curl_creates_the_folders_of_an_upload(server, server_root, tmp_path, passive):
    payload = os.urandom(120_000)
    source = tmp_path / "file.bin"
    source.write_bytes(payload)
    mode = [] if passive else ["-P", "-"]
    run([CURL, "-sS", *mode, "--ftp-create-dirs", "-T", str(source), url(server, "a/b/c/file.bin")])
    assert (server_root / "a" / "b" / "c" / "file.bin").read_bytes() == payload
    # Again, into folders that now exist (curl's MKD gets 550 and it goes on with CWD).
    run([CURL, "-sS", *mode, "--ftp-create-dirs", "-T", str(source), url(server, "a/b/c/again.bin")])
    assert (server_root / "a" / "b" / "c" / "again.bin").read_bytes() == payload


# --- ftplib: abort mid-transfer, machine listings ----------------------------------------------

@pytest.fixture
def slow_server(server_root, tmp_path):
    """A server whose downloads take seconds, so an ABOR always arrives mid-transfer.

    Ours sleeps before each 64 KiB chunk (--fault-delay); another server gets
    a file too big for the loopback socket buffers instead.
    """
    if SERVER_KIND == "ftpkit":
        running = start_ftpkit(server_root, tmp_path / "server-output", "--fault-delay", "0.05")
        size = 2_000_000
    else:
        running = LAUNCHERS[SERVER_KIND](server_root, tmp_path / "server-output")
        size = 200_000_000
    with running:
        yield running, size


def ftplib_session(server, passive: bool) -> ftplib.FTP:
    session = ftplib.FTP()
    session.connect(server.host, server.port, timeout=15)
    session.login()
    session.set_pasv(passive)
    return session


@MODES
def test_ftplib_abort_mid_transfer_then_the_session_goes_on(slow_server, server_root, passive):
    server, size = slow_server
    with open(server_root / "slow.bin", "wb") as big:
        big.truncate(size)                                  # sparse: quick to make
    session = ftplib_session(server, passive)
    try:
        data = session.transfercmd("RETR slow.bin")
        assert len(data.recv(8192)) > 0                      # the transfer is running
        first = session.abort()                              # ABOR sent as TCP urgent data
        data.close()
        # RFC 959 4.1.3: 426 for the aborted transfer, then 226 for the ABOR itself.
        assert first.startswith("426"), first
        assert session.getresp().startswith("226")
        assert session.voidcmd("NOOP").startswith("200")
        session.voidcmd("TYPE I")
        assert session.size("slow.bin") == size             # the file on the server is untouched
        assert session.quit().startswith("221")
    finally:
        session.close()


@needs_lftp
@MODES
def test_lftp_aborts_a_transfer_with_telnet_ip_dm_and_goes_on(slow_server, server_root, tmp_path, passive):
    """lftp's abort (a killed job) sends Telnet IP, DM as urgent data, then ABOR (RFC 959 4.1.3)."""
    server, size = slow_server
    with open(server_root / "slow.bin", "wb") as big:
        big.truncate(size * 4)
    script = "; ".join([
        "set cmd:fail-exit no", "set net:max-retries 1", "set net:timeout 15", "set ftp:ssl-allow no",
        f"set ftp:passive-mode {'on' if passive else 'off'}",
        "set ftp:use-telnet-iac yes",            # the default, said out loud: IP/DM before ABOR
        "get slow.bin -o part.bin &", "sleep 1.5", "kill all", "sleep 0.5", "ls", "quit"])
    result = run([LFTP, "-d", "-u", "anonymous,interop@example.org", "-e", script,
                  f"ftp://{server.host}:{server.port}"], cwd=tmp_path)
    dialogue = []                       # "> COMMAND" and "< reply" lines, from lftp's debug output
    for line in result.stderr.splitlines():
        for marker, direction in (("---> ", "> "), ("<--- ", "< ")):
            if marker in line:
                dialogue.append(direction + line.split(marker, 1)[1].strip())
    assert "> RETR slow.bin" in dialogue, "the transfer had not started after 1.5 s\n" + "\n".join(dialogue)
    abort = dialogue.index("> ABOR")
    assert dialogue[abort + 1].startswith("< 426"), dialogue[abort:]
    assert dialogue[abort + 2].startswith("< 226"), dialogue[abort:]
    assert "> LIST" in dialogue[abort:] and "slow.bin" in result.stdout      # the session went on
    assert sum(line.startswith("< 220") for line in dialogue) == 1            # on the same connection


def mlsd_time(stamp: str) -> int:
    """RFC 3659 time-val (UTC, YYYYMMDDHHMMSS[.sss]) to whole epoch seconds."""
    return calendar.timegm(time.strptime(stamp[:14], "%Y%m%d%H%M%S"))


@MODES
def test_mlsd_agrees_with_the_files_on_disk(server, server_root, passive):
    make_tree(server_root)
    os.utime(server_root / "plain.bin", (1_600_000_000, 1_600_000_000))   # a known time, to the second
    session = ftplib_session(server, passive)
    try:
        listed = {name: facts for name, facts in session.mlsd(facts=["type", "size", "modify"])
                  if facts["type"] not in ("cdir", "pdir")}
        on_disk = {path.name: path for path in server_root.iterdir()}
        assert sorted(listed) == sorted(on_disk)
        for name, facts in listed.items():
            path = on_disk[name]
            assert facts["type"] == ("dir" if path.is_dir() else "file"), name
            if path.is_file():
                assert int(facts["size"]) == path.stat().st_size, name
            assert mlsd_time(facts["modify"]) == int(path.stat().st_mtime), name
        assert mlsd_time(listed["plain.bin"]["modify"]) == 1_600_000_000

        # The same facts for one file on the control channel (MLST) and MDTM.
        line = session.sendcmd("MLST plain.bin").splitlines()[1]
        facts = dict(fact.split("=", 1) for fact in line.strip().split(" ", 1)[0].rstrip(";").split(";"))
        assert facts["type"].lower() == "file" and int(facts["size"]) == 200_000
        assert mlsd_time(facts["modify"]) == 1_600_000_000
        assert mlsd_time(session.sendcmd("MDTM plain.bin").split()[1]) == 1_600_000_000
        # A sub-folder, by path.
        inside = {name for name, facts in session.mlsd("sub") if facts["type"] not in ("cdir", "pdir")}
        assert inside == {"deeper", "space dir", "empty.txt", "also empty"}
        session.quit()
    finally:
        session.close()
