"""Fixtures shared by the kit's tests: servers on loopback, real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servers import (RunningServer, ServerUnavailable, start_ftpkit, start_proftpd,  # noqa: E402
                     start_pyftpdlib, start_vsftpd)

REPO_ROOT = Path(__file__).resolve().parent.parent

# The kit's `trace` package must win over the standard library's `trace`.
import trace  # noqa: E402

assert Path(trace.__file__).resolve().parent == REPO_ROOT / "trace", (
    f"imported the wrong trace module: {trace.__file__}; run pytest from the repository root")

# The run fails if the tests leave anything behind: /dev changed, a process,
# a network namespace or a temporary folder (issue 10). See tests/leakcheck.py.
from leakcheck import pytest_sessionfinish, pytest_sessionstart, pytest_terminal_summary  # noqa: E402,F401


@pytest.fixture
def server_root(tmp_path: Path) -> Path:
    root = tmp_path / "server-root"
    root.mkdir()
    return root


@pytest.fixture
def client_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "client"
    directory.mkdir()
    return directory


@pytest.fixture
def ftp_server(server_root: Path):
    """The reference server, in this process, on a free loopback port (untraced)."""
    from solutions.filesystem import Root
    from solutions.server import Server
    from solutions.session import ServerConfig

    server = Server("127.0.0.1", 0, ServerConfig(Root(server_root), login_failure_delay=0.05)).start()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture
def server_process(tmp_path: Path):
    """Factory: start the reference server in a subprocess (tests/servers.py); stopped after the test.

    ``server_process(root, *options, trace_log=LOG, script=False)`` returns a
    :class:`servers.RunningServer` (``.host``, ``.port``, ``.address``,
    ``.process``, ``.stderr()``, ``.stop()``). A server that does not start
    raises ServerFailedToStart with its own error output.
    """
    started: list[RunningServer] = []

    def start(root: Path, *extra: str, **kwargs) -> RunningServer:
        server = start_ftpkit(root, tmp_path / "server-output", *extra, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _server_fixture(launch):
    """A fixture running one server (from tests/servers.py) on ``server_root``; a missing program skips."""
    @pytest.fixture
    def fixture(server_root: Path, tmp_path: Path):
        try:
            server = launch(server_root, tmp_path / "server-output")
        except ServerUnavailable as missing:
            pytest.skip(str(missing))
        with server:
            yield server
    return fixture


pyftpdlib_process = _server_fixture(start_pyftpdlib)
vsftpd_process = _server_fixture(start_vsftpd)
proftpd_process = _server_fixture(start_proftpd)


def run_client(host: str, port: int, commands: list[str], cwd: Path, *extra: str,
               timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the reference client in a subprocess, feeding it commands on stdin."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "solutions.client", *extra, host, str(port)],
                          input="\n".join(commands) + "\n", cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False
