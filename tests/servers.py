"""The servers the kit's tests run: ours, pyftpdlib, vsftpd, proftpd.

Each runs as its own process on a free loopback port with a given root
folder, started through the kit's one launcher, :mod:`trace.serverprocess`:
it waits until the server is ready (ours and pyftpdlib print ``listening on
HOST:PORT``; vsftpd and proftpd are ready when their port answers with a
220 greeting), keeps its stdout and stderr in files under ``workdir`` that
can be read at any time (so a server that fails to start is reported with
its own words, issue 13), and stops and reaps it on exit. This file adds
what only the tests need: which daemons, their configuration files, and a
skip where one is not installed.

    with start_ftpkit(root, workdir) as server:
        ftplib.FTP().connect(*server.address)

Every server logs anonymous users in; ``server.upload_root`` is the folder
under ``root`` where they may write (``root/upload`` for vsftpd, which
refuses a writable anonymous root; ``root`` itself for the others).

A missing daemon raises :class:`ServerUnavailable` (the fixtures turn it
into a skip with its one-line reason); a server that does not come up raises
:class:`ServerFailedToStart` with its output.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import sys
from pathlib import Path

from trace.serverprocess import ServerFailedToStart, ServerProcess  # noqa: F401  (the tests catch it from here)

REPO_ROOT = Path(__file__).resolve().parent.parent

# Debian's vsftpd and proftpd-core conflict (both provide ftp-server), so CI
# unpacks vsftpd beside the installed proftpd: `apt-get download vsftpd &&
# dpkg -x vsftpd_*.deb /opt/vsftpd`. Either place works.
VSFTPD_PLACES = ("vsftpd", "/usr/sbin/vsftpd", "/opt/vsftpd/usr/sbin/vsftpd")
PROFTPD_PLACES = ("proftpd", "/usr/sbin/proftpd")
PROFTPD_MODULES = Path("/usr/lib/proftpd")     # Debian's shared modules (mod_digest for HASH, ...)


class ServerUnavailable(RuntimeError):
    """The server's program is not installed here (a reason to skip, not to fail)."""


class RunningServer(ServerProcess):
    """A server process (see :class:`trace.serverprocess.ServerProcess`) and the
    folder it serves; a context manager that stops it."""

    def __init__(self, name: str, command: list[str], workdir: Path, *, root: Path, upload_dir: str = "",
                 cwd: Path = REPO_ROOT, env: dict | None = None, greeting_port: int | None = None):
        self.root = root                    # the folder served
        self.upload_dir = upload_dir        # where anonymous users may write, relative to root ("" = root)
        super().__init__(name, command, workdir, cwd=cwd, env=env, greeting_port=greeting_port)

    @property
    def upload_root(self) -> Path:
        """The local folder behind ``upload_dir``: what a client's uploads land in."""
        return self.root / self.upload_dir


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now (for daemons that cannot be told to pick one)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def find_program(places: tuple[str, ...], name: str) -> str:
    for place in places:
        found = shutil.which(place)
        if found:
            return found
    raise ServerUnavailable(f"{name} is not installed (.ci/run installs it)")


# --- our server ------------------------------------------------------------------

def start_ftpkit(root: Path, workdir: Path, *extra: str, trace_log: Path | None = None,
                 package: str = "solutions", script: bool = False, env: dict | None = None,
                 cwd: Path = REPO_ROOT) -> RunningServer:
    """``python -m <package>.server --root ROOT [--trace LOG] EXTRA... 0`` (or the script form)."""
    if script:
        command = [sys.executable, f"{package}/server.py"]
    else:
        command = [sys.executable, "-m", f"{package}.server"]
    command += ["--root", str(root), *extra]
    if trace_log:
        command += ["--trace", str(trace_log)]
    if env is None:
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return RunningServer(f"{package}.server", command + ["0"], workdir, cwd=cwd, env=env, root=root)


# --- pyftpdlib ---------------------------------------------------------------------

# pyftpdlib in a process of its own (the tests' and the benchmark's).
PYFTPDLIB_SERVER = """
import logging, socket, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer, ThreadedFTPServer
# Warnings only, as our server: logging every command would slow it down.
logging.basicConfig(level=logging.WARNING)
root, kind = sys.argv[1], sys.argv[2]
authorizer = DummyAuthorizer()
authorizer.add_anonymous(root, perm="elradfmwMT")
FTPHandler.authorizer = authorizer
server_class = FTPServer if kind == "async" else ThreadedFTPServer
# The same listen backlog as our server, so a burst of logins meets the same queue.
server = server_class(("127.0.0.1", 0), FTPHandler, backlog=socket.SOMAXCONN)
server.max_cons = 1024
server.max_cons_per_ip = 0
print("listening on %s:%d" % server.address[:2], flush=True)
server.serve_forever(handle_exit=True)
"""


def start_pyftpdlib(root: Path, workdir: Path, kind: str = "threaded") -> RunningServer:
    """pyftpdlib, anonymous with every permission; ``kind`` "threaded" or "async" (one event loop).

    Its event loop is state of the whole process, hence a process of its own.
    """
    if importlib.util.find_spec("pyftpdlib") is None:
        raise ServerUnavailable("pyftpdlib is not installed (pip install -r requirements.txt)")
    return RunningServer("pyftpdlib", [sys.executable, "-W", "ignore", "-c", PYFTPDLIB_SERVER, str(root), kind],
                         workdir, root=root)


# --- vsftpd --------------------------------------------------------------------------

def anonymous_account() -> str:
    """The account vsftpd runs anonymous sessions as: Debian's ``ftp``.

    vsftpd enters its home before the chroot, so ``nobody`` (home
    /nonexistent) will not do. CI only unpacks vsftpd; the account comes
    from proftpd-core's package (``adduser --system ftp --home /srv/ftp``).
    """
    try:
        home = pwd.getpwnam("ftp").pw_dir
    except KeyError:
        raise ServerUnavailable("vsftpd needs the user ftp (.ci/run installs proftpd-core, which adds it)") from None
    if not os.path.isdir(home):
        raise ServerUnavailable(f"vsftpd needs the home of the user ftp, {home}, which is missing")
    return "ftp"


def start_vsftpd(root: Path, workdir: Path, writable: bool = True) -> RunningServer:
    """vsftpd in the foreground, anonymous (uploads, folders, deletes when ``writable``).

    vsftpd works as the unprivileged user ``ftp`` inside a chroot to ``root``
    and refuses an anonymous root that user can write to, whatever
    ``allow_writeable_chroot`` says. So the root is made read-only for
    others and, when ``writable``, uploads go to ``root/upload`` (mode 777),
    the usual layout of an anonymous vsftpd.
    """
    program = find_program(VSFTPD_PLACES, "vsftpd")
    workdir.mkdir(parents=True, exist_ok=True)
    empty = workdir / "vsftpd-empty"            # vsftpd's secure_chroot_dir: empty, not writable
    empty.mkdir(exist_ok=True)
    port = free_port()
    write = "YES" if writable else "NO"
    root.chmod(0o755)
    if writable:
        (root / "upload").mkdir(exist_ok=True)
        (root / "upload").chmod(0o777)
    config = workdir / "vsftpd.conf"
    config.write_text("\n".join([
        "listen=YES", "listen_ipv6=NO", "listen_address=127.0.0.1", f"listen_port={port}",
        "background=NO", "seccomp_sandbox=NO", "isolate=NO", "isolate_network=NO",
        "anonymous_enable=YES", "local_enable=NO", "no_anon_password=YES", f"anon_root={root}",
        f"ftp_username={anonymous_account()}",
        f"write_enable={write}", f"anon_upload_enable={write}",
        f"anon_mkdir_write_enable={write}", f"anon_other_write_enable={write}",
        "anon_umask=022", "anon_world_readable_only=NO",
        f"secure_chroot_dir={empty}", "xferlog_enable=NO", "dirmessage_enable=NO",
        "pasv_enable=YES", "port_enable=YES", "connect_from_port_20=NO",
        f"vsftpd_log_file={workdir / 'vsftpd.log'}", ""]))
    return RunningServer("vsftpd", [program, str(config)], workdir, greeting_port=port, root=root,
                         upload_dir="upload" if writable else "")


# --- proftpd ---------------------------------------------------------------------------

def start_proftpd(root: Path, workdir: Path, modules: tuple[str, ...] = ()) -> RunningServer:
    """proftpd in the foreground (``-n``), anonymous with write access.

    proftpd checks the anonymous root as the anonymous user before its
    chroot, and pytest's temp folders are private to root (0700), so the
    anonymous login runs as root, confined by the chroot to ``root``.

    ``modules`` are extra shared modules to load, e.g. ``("mod_digest.c",)``
    for HASH (Debian ships them in /usr/lib/proftpd); a missing one is
    :class:`ServerUnavailable`.
    """
    program = find_program(PROFTPD_PLACES, "proftpd")
    for module in modules:
        if not (PROFTPD_MODULES / f"{module.removesuffix('.c')}.so").exists():
            raise ServerUnavailable(f"proftpd's {module} is not in {PROFTPD_MODULES} (.ci/run installs proftpd-core)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    loads = "".join(f"  LoadModule {module}\n" for module in modules)
    config = workdir / "proftpd.conf"
    config.write_text(f"""\
ServerName "ftpkit test proftpd"
ServerType standalone
DefaultServer on
Port {port}
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
UseReverseDNS off
User nobody
Group nogroup
PidFile {workdir / 'proftpd.pid'}
ScoreboardFile {workdir / 'proftpd.scoreboard'}
DelayTable none
WtmpLog off
UseFtpUsers off
TransferLog none
SystemLog {workdir / 'proftpd.log'}
<IfModule mod_dso.c>
  ModulePath {PROFTPD_MODULES}
{loads}</IfModule>
<Anonymous {root}>
  User root
  Group root
  RootLogin on
  UseFtpUsers off
  UserAlias anonymous root
  RequireValidShell off
  AllowOverwrite on
  <Limit WRITE>
    AllowAll
  </Limit>
</Anonymous>
""")
    return RunningServer("proftpd", [program, "-n", "-q", "-c", str(config)], workdir, greeting_port=port,
                         root=root)


LAUNCHERS = {"ftpkit": start_ftpkit, "pyftpdlib": start_pyftpdlib,
             "vsftpd": start_vsftpd, "proftpd": start_proftpd}
