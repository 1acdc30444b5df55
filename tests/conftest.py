"""Fixtures shared by the kit's tests: servers on loopback, real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


class ServerProcess:
    """The reference server as a separate process, as students run it."""

    def __init__(self, root: Path, *extra: str, trace_log: Path | None = None,
                 script: bool = False):
        command = [sys.executable, "solutions/server.py"] if script else [sys.executable, "-m", "solutions.server"]
        command += ["--root", str(root), *extra]
        if trace_log:
            command += ["--trace", str(trace_log)]
        self.process = subprocess.Popen(command + ["0"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"server did not start: {line!r} {self.process.stderr.read()}")
        self.host, port = line.split()[-1].rsplit(":", 1)
        self.port = int(port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


@pytest.fixture
def server_process():
    """Factory: start the reference server in a subprocess; stopped after the test."""
    started: list[ServerProcess] = []

    def start(root: Path, *extra: str, **kwargs) -> ServerProcess:
        server = ServerProcess(root, *extra, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


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
