"""Start the reference server and client as separate processes, as on two
machines, both tracing into one log.

This is the bottom layer of recording: it knows nothing of captures, demos
or notebooks (those import it; it imports none of them). The server is
started, waited for and stopped by :mod:`trace.serverprocess`, as the kit's
tests start theirs; the client runs to its end, so it needs none of that.
Each program may run inside a network namespace (``netns``): it is then
started through ``ip netns exec NS``, and sees only that namespace's
interfaces.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .serverprocess import ServerProcess

REPO_ROOT = Path(__file__).resolve().parent.parent

# The implementation these tools run: the reference solution in the kit, and
# the student's own lab/ in a student release, which has no solutions/.
IMPLEMENTATION = "solutions" if (REPO_ROOT / "solutions" / "server.py").exists() else "lab"


@dataclass
class Session:
    log: Path
    server_port: int
    client_output: str
    client_status: int


def _in_netns(netns: str | None, args: list[str]) -> list[str]:
    """``args`` run inside network namespace ``netns`` (unchanged for None)."""
    return ["ip", "netns", "exec", netns, *args] if netns else args


def _environment() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO_ROOT))


@contextmanager
def serving(log, server_root, server_args=(), *, host: str = "127.0.0.1", port: int = 0,
            netns: str | None = None, module: str | None = None, extra_args=(), workdir=None):
    """The reference server as a process tracing into ``log``; yields its port.

    ``host``/``port``: where it listens (port 0: any free port); ``netns``:
    the network namespace it runs in; ``module``: another server module to
    run instead of ``<implementation>.server``; ``extra_args``: options the
    place it runs in needs, besides the caller's ``server_args``;
    ``workdir``: where the temporary folder for its output goes."""
    module = module or f"{IMPLEMENTATION}.server"
    command = [sys.executable, "-m", module, "--host", host,
               "--root", str(server_root), "--trace", str(Path(log).resolve()),
               *extra_args, *server_args, str(port)]
    # A minute to start, not the tests' 15 s: a student's laptop can be slow
    # to start Python the first time (a virus scanner reading every file).
    with tempfile.TemporaryDirectory(prefix="ftpkit-server-", dir=workdir) as output, \
            ServerProcess(module, _in_netns(netns, command), Path(output), cwd=REPO_ROOT,
                          env=_environment(), timeout=60.0) as server:
        yield server.port


def run_client(log, port: int, script: list[str], client_dir, active: bool = False,
               timeout: float = 120.0, wait: bool = True, *, host: str = "127.0.0.1",
               netns: str | None = None):
    """The reference client as a process tracing into ``log``, typing ``script``
    to the server at ``host``:``port`` (from inside ``netns``, if given).

    With ``wait=False`` it returns the running :class:`subprocess.Popen`
    (several clients at once); otherwise the finished CompletedProcess."""
    args = [sys.executable, "-m", f"{IMPLEMENTATION}.client", "--trace", str(Path(log).resolve())]
    if active:
        args.append("--active")
    args = _in_netns(netns, args + [host, str(port)])
    stdin = "\n".join(script) + "\n"
    if wait:
        return subprocess.run(args, cwd=client_dir, env=_environment(), input=stdin,
                              capture_output=True, text=True, timeout=timeout)
    # The script goes in through a file, so the caller's communicate() has no
    # stdin pipe to write to and any number of clients can run at once.
    with tempfile.TemporaryFile("w+") as script_file:
        script_file.write(stdin)
        script_file.seek(0)
        return subprocess.Popen(args, cwd=client_dir, env=_environment(), stdin=script_file,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def put_files(directory, files: dict | None) -> None:
    """Write ``files`` (name -> bytes, or a size: that many deterministic bytes)."""
    for name, content in (files or {}).items():
        (Path(directory) / name).write_bytes(content_of(content))


def content_of(content) -> bytes:
    """The bytes a ``files`` entry stands for (a size: that many deterministic bytes)."""
    if isinstance(content, int):
        block = bytes((i * 131 + 7) % 256 for i in range(4096))
        return (block * (content // 4096 + 1))[:content]
    return content if isinstance(content, bytes) else str(content).encode()


def run_session(log, script: list[str], server_files: dict | None = None,
                client_files: dict | None = None, active: bool = False,
                workdir=None, timeout: float = 120.0, server_args=(), network=None) -> Session:
    """Run the reference server and client as two processes, both tracing
    into ``log``, the client typing ``script``. ``server_files`` and
    ``client_files`` are put in the server's root and the client's
    directory first (see :func:`put_files`); ``server_args`` go to the
    server (for example the fault-injection options).

    ``network``: a :class:`trace.netns.Network` to run in (the server in its
    server namespace, the client in its client namespace); by default both
    run on loopback."""
    log = Path(log).resolve()
    where_server = network.server_placement() if network else {}
    where_client = network.client_placement() if network else {}
    with tempfile.TemporaryDirectory(prefix="ftpkit-record-", dir=workdir) as tmp:
        server_root, client_dir = Path(tmp, "server"), Path(tmp, "client")
        server_root.mkdir()
        client_dir.mkdir()
        put_files(server_root, server_files)
        put_files(client_dir, client_files)
        with serving(log, server_root, server_args, workdir=tmp, **where_server) as port:
            client = run_client(log, port, script, client_dir, active, timeout, **where_client)
    return Session(log, port, client.stdout + client.stderr, client.returncode)
