"""Other people's FTP servers, started on a free loopback port for a test.

pyftpdlib (PyPI), vsftpd and proftpd (Debian) are the servers students meet
outside the kit. Each launcher writes a configuration into a folder of its
own, starts the daemon in the foreground as a child process, waits until it
answers, and on exit stops it and removes the folder: nothing outlives the
test. A missing program is a skip whose reason names it (CI installs all
three).

The daemons log in anonymous users as ``nobody``, which cannot enter
pytest's private temporary folders (mode 0700 under /tmp/pytest-of-root),
so the served folder lives in a world-readable folder made here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

# Debian's vsftpd and proftpd-core conflict (both are the system's "ftp-server"),
# so CI unpacks one of them here instead of installing it; see .ci/run.
VSFTPD_CANDIDATES = ("vsftpd", "/usr/sbin/vsftpd", "/opt/ftpkit-vsftpd/usr/sbin/vsftpd")
PROFTPD_CANDIDATES = ("proftpd", "/usr/sbin/proftpd")


def find_program(candidates) -> str | None:
    for candidate in candidates:
        found = shutil.which(candidate) if "/" not in candidate else (
            candidate if os.access(candidate, os.X_OK) else None)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Daemon:
    """A running server: ``address``, ``name``, and ``root``, the folder a
    client reaches after ``CWD workdir`` ("" for none) and may write in."""

    def __init__(self, name: str, root: Path, port: int, process: subprocess.Popen, workdir: str = ""):
        self.name, self.root, self.address, self.process = name, root, ("127.0.0.1", port), process
        self.workdir = workdir


def _wait_until_it_answers(process: subprocess.Popen, port: int, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}): {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
                if probe.recv(64).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not answer on port {port}: {log.read_text(errors='replace')[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _workspace():
    """A folder for one server: its configuration, its log and its root."""
    folder = Path(tempfile.mkdtemp(prefix="ftpkit-otherserver-"))
    try:
        folder.chmod(0o755)
        root = folder / "root"
        root.mkdir()
        root.chmod(0o777)          # the anonymous user (nobody) uploads here
        yield folder, root
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def run_daemon(name: str, command_for, port: int, folder: Path, root: Path, workdir: str = ""):
    log = folder / "server.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(command_for(folder), stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=folder)
    try:
        _wait_until_it_answers(process, port, log)
        yield Daemon(name, root / workdir if workdir else root, port, process, workdir)
    finally:
        _stop(process)


def anonymous_user() -> str:
    """The account vsftpd runs anonymous sessions as: Debian's ``ftp`` (made
    by the vsftpd and proftpd packages), else ``nobody``."""
    import pwd
    try:
        pwd.getpwnam("ftp")
        return "ftp"
    except KeyError:
        return "nobody"


@contextmanager
def vsftpd():
    program = find_program(VSFTPD_CANDIDATES)
    if program is None:
        pytest.skip("vsftpd is not installed (Debian package vsftpd)")
    with _workspace() as (folder, root):
        port = free_port()
        empty = folder / "empty"
        empty.mkdir()
        # vsftpd refuses an anonymous root the anonymous user can write to
        # (its allow_writeable_chroot does not cover anonymous sessions):
        # the root is read-only, the uploads go to pub/ in it.
        root.chmod(0o755)
        (root / "pub").mkdir()
        (root / "pub").chmod(0o777)
        (folder / "vsftpd.conf").write_text("\n".join([
            "listen=YES", "listen_address=127.0.0.1", f"listen_port={port}", "background=NO",
            "anonymous_enable=YES", "local_enable=NO", "no_anon_password=YES", f"ftp_username={anonymous_user()}",
            f"anon_root={root}", "allow_writeable_chroot=YES", "write_enable=YES",
            "anon_upload_enable=YES", "anon_mkdir_write_enable=YES", "anon_other_write_enable=YES",
            "anon_umask=022", "seccomp_sandbox=NO", f"secure_chroot_dir={empty}",
            "pasv_enable=YES", "port_enable=YES", "connect_from_port_20=NO",
            "xferlog_enable=NO", "use_localtime=NO", "",
        ]))
        with run_daemon("vsftpd", lambda f: [program, str(f / "vsftpd.conf")], port, folder, root,
                        workdir="pub") as daemon:
            yield daemon


@contextmanager
def proftpd():
    program = find_program(PROFTPD_CANDIDATES)
    if program is None:
        pytest.skip("proftpd is not installed (Debian package proftpd-core)")
    with _workspace() as (folder, root):
        port = free_port()
        digest = Path("/usr/lib/proftpd/mod_digest.so").exists()
        (folder / "proftpd.conf").write_text("\n".join([
            *(["LoadModule mod_digest.c"] if digest else []),
            "ServerType standalone", "DefaultServer on", f"Port {port}", "DefaultAddress 127.0.0.1",
            "SocketBindTight on", "UseIPv6 off", "User nobody", "Group nogroup",
            f"PidFile {folder}/proftpd.pid", f"ScoreboardFile {folder}/scoreboard",
            "DelayTable none", "WtmpLog off", "TransferLog none", f"SystemLog {folder}/system.log",
            "RequireValidShell off", "UseFtpUsers off", "AllowOverwrite on", "Umask 022",
            f"<Anonymous {root}>", "  User nobody", "  Group nogroup", "  UserAlias anonymous nobody",
            "  <Limit WRITE>", "    AllowAll", "  </Limit>", "</Anonymous>", "",
        ]))
        with run_daemon("proftpd", lambda f: [program, "-n", "-q", "-c", str(f / "proftpd.conf")],
                        port, folder, root) as daemon:
            yield daemon


@contextmanager
def pyftpdlib_server():
    try:
        import pyftpdlib  # noqa: F401
    except ImportError:
        pytest.skip("pyftpdlib is not installed (pip install pyftpdlib)")
    with _workspace() as (folder, root):
        port = free_port()
        command = [sys.executable, "-m", "pyftpdlib", "-i", "127.0.0.1", "-p", str(port), "-w", "-d", str(root)]
        with run_daemon("pyftpdlib", lambda f: command, port, folder, root) as daemon:
            yield daemon


LAUNCHERS = {"pyftpdlib": pyftpdlib_server, "vsftpd": vsftpd, "proftpd": proftpd}
