"""Fixtures of the graded tests: files, the student's server and client, the
reference peers. Registered by the repository's conftest.py.

The student's code never runs in this process. Its server runs as a process
of its own and everything else of it (its FtpClient, its parser, its
data-channel ends) in a driver process (``code``), both in the sandbox of
tests/grading/sandbox.py; what a test gets back are proxies and plain
values. The folders a test shares with the student's code are in the
sandbox; every process of the submission is killed when the test ends.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from . import watch
from .harness import IO_TIMEOUT, REPO_ROOT, make_files, reference_available
from .peers import FtplibClient, Probe, Process, PyftpdlibServer, ReferenceClient
from .launcher import Launcher
from .sandbox import FORKSERVER, Sandbox


@pytest.fixture(scope="session")
def sandbox(request):
    """Where the submission runs: a private copy, a student user, limits (see sandbox.py)."""
    impl = request.config._ftpkit_impl
    gradescope = request.config.getoption("--gradescope", None)
    hide = [Path(gradescope).resolve().parent] if gradescope else []
    box = Sandbox(impl.package, impl.directory, hide=hide,
                  isolate=request.config.getoption("--isolation", "auto") != "off")
    request.config._ftpkit_sandbox = box
    yield box
    box.close()


@pytest.fixture
def student_area(sandbox, request):
    """This test's folder, shared with the student's processes; when the test
    ends, every process of the submission is killed. While it runs, the
    grader's waits for the submission are watched (watch.py): a hang is
    called as soon as it is plain, not at the end of a timeout."""
    folder = sandbox.folder(request.node.name)
    watch.set_current(watch.Watch(sandbox.pids, sandbox.kill_all))
    yield folder
    watch.set_current(None)
    sandbox.kill_all()


@pytest.fixture
def files(student_area: Path, sandbox):
    """A server root with a binary file, a text file, a big file and a directory."""
    root = student_area / "root"
    root.mkdir()
    content = make_files(root)
    sandbox.give(root)
    return root, content


@pytest.fixture
def workdir(student_area: Path, sandbox) -> Path:
    directory = student_area / "work"
    directory.mkdir(exist_ok=True)
    sandbox.give(directory)
    return directory


@pytest.fixture
def grader_dir(tmp_path: Path) -> Path:
    """The grader's own files (the reference peers' traces): out of the student's reach."""
    directory = tmp_path / "grader"
    directory.mkdir(exist_ok=True)
    return directory


@pytest.fixture
def code(sandbox, student_area, steps, request):
    """The driver running the student's code: ``code.module("protocol").parse_command(...)``."""
    child = sandbox.driver(student_area)
    request.node._ftpkit_child = child
    steps.log("your code (the driver process)", child.log)
    yield child
    child.close()


@pytest.fixture
def student_server(impl, sandbox, student_area, workdir, steps, request):
    """Factory: start the server under test as a process; stopped after the test."""
    started = request.node._ftpkit_servers = []

    def start(root: Path, *extra: str) -> Process:
        server = Process(f"the server under test ({impl.name})", impl.package, None, root, workdir, steps,
                         *extra, sandbox=sandbox)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def reference_launcher(request, tmp_path_factory):
    """A fork server that imported the reference server once (see forkserver.py):
    each reference server of the grading is a fork of it, not a fresh Python."""
    if not reference_available():
        yield None
        return
    launcher = Launcher(sys.executable, [], -1, -1, {}, FORKSERVER, REPO_ROOT, request.config._ftpkit_impl.env(),
                        tmp_path_factory.mktemp("reference"), modules=("solutions.server",))
    yield launcher
    launcher.close()


@pytest.fixture
def reference_server(impl, grader_dir, steps, reference_launcher, student_area):
    """Factory: the reference server (the kit's solutions, or pyftpdlib in a release)."""
    started = []

    def start(root: Path):
        if reference_launcher is not None:
            server = Process("the reference server", "solutions", impl.env(), root, grader_dir, steps,
                             launcher=reference_launcher)
            watch.current().add_peer(server.process.pid)    # it may be what the student's code waits for
        else:
            server = PyftpdlibServer(root, steps)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def probe(steps):
    """Factory: a raw control connection to a server."""
    opened = []

    def connect(address, name: str = "probe") -> Probe:
        connection = Probe(address, steps, name)
        opened.append(connection)
        return connection

    yield connect
    for connection in opened:
        connection.close()


@pytest.fixture
def ftp_client(steps, grader_dir):
    """Factory: an FTP client of the given kind ("ftplib" or "reference"), logged in."""
    opened = []

    def connect(kind: str, address, passive: bool = True):
        if kind == "ftplib":
            client = FtplibClient(address, steps, passive)
        else:
            client = ReferenceClient(address, steps, grader_dir, passive)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


@pytest.fixture
def client_trace(code, workdir, steps):
    """Trace the student's client (in the driver process) to a file."""
    path = workdir / "client.log"
    code.trace_start(path, "client")
    steps.trace("the client under test", path)
    return path


@pytest.fixture
def student_client(code, client_trace, steps):
    """Factory: the student's FtpClient, connected and logged in, traced."""
    opened = []

    def connect(address, passive: bool = True, login: bool = True):
        module = code.module("ftpclient")
        client = module.FtpClient(address[0], address[1], passive=passive, timeout=IO_TIMEOUT)
        opened.append(client)
        steps.note(f"FtpClient({address[0]!r}, {address[1]}, passive={passive}).connect()")
        client.connect()
        if login:
            steps.note("client.login()")
            client.login()
        return client

    yield connect
    for client in opened:
        try:
            client.close()
        except Exception:
            pass


@pytest.fixture
def local_trace(code, workdir, steps):
    """Trace the student's code that runs in the driver (data-channel ends)."""
    path = workdir / "local.log"
    code.trace_start(path, "server")
    steps.trace("your code (in the driver process)", path)
    return path
