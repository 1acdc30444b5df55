"""Fixtures of the graded tests: files, the student's server and client, the
reference peers. Registered by the repository's conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

import trace

from .harness import (IO_TIMEOUT, FtplibClient, Probe, Process, PyftpdlibServer, ReferenceClient,
                      make_files, reference_available)


@pytest.fixture
def files(tmp_path: Path):
    """A server root with a binary file, a text file, a big file and a directory."""
    root = tmp_path / "root"
    root.mkdir()
    return root, make_files(root)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    directory = tmp_path / "work"
    directory.mkdir(exist_ok=True)
    return directory


@pytest.fixture
def student_server(impl, workdir, steps):
    """Factory: start the server under test as a process; stopped after the test."""
    started = []

    def start(root: Path, *extra: str) -> Process:
        server = Process(f"the server under test ({impl.name})", impl.package, impl.env(), root,
                         workdir, steps, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def reference_server(impl, workdir, steps):
    """Factory: the reference server (the kit's solutions, or pyftpdlib in a release)."""
    started = []

    def start(root: Path):
        if reference_available():
            server = Process("the reference server", "solutions", impl.env(), root, workdir, steps)
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
def ftp_client(steps, workdir):
    """Factory: an FTP client of the given kind ("ftplib" or "reference"), logged in."""
    opened = []

    def connect(kind: str, address, passive: bool = True):
        if kind == "ftplib":
            client = FtplibClient(address, steps, passive)
        else:
            client = ReferenceClient(address, steps, workdir, passive)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


@pytest.fixture
def client_trace(workdir, steps):
    """Trace this process's sockets (the student's client runs in it) to a file."""
    path = workdir / "client.log"
    trace.start(path, "client")
    steps.trace("the client under test", path)
    try:
        yield path
    finally:
        trace.stop()


@pytest.fixture
def student_client(impl, client_trace, steps):
    """Factory: the student's FtpClient, connected and logged in, traced."""
    opened = []

    def connect(address, passive: bool = True, login: bool = True):
        module = impl.module("ftpclient")
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
def local_trace(workdir, steps):
    """Trace the student's code that runs in this process (data-channel ends)."""
    path = workdir / "local.log"
    trace.start(path, "server")
    steps.trace("the code under test (in the grader's process)", path)
    try:
        yield path
    finally:
        trace.stop()
