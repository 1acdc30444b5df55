"""A server program as a process of its own: started, waited for until it
is ready, its output readable at any time, stopped and reaped.

The kit starts its servers through it: the reference (or lab) server for
the notebooks and recordings (:mod:`trace.launch`), and for the kit's tests
and benchmarks also pyftpdlib, vsftpd and proftpd (``tests/servers.py``).
It knows nothing of which server it runs; the callers build the command
line. (The grader has a launcher of its own: it confines student code.)

A server is ready in one of two ways. The kit's server prints ``listening on
HOST:PORT`` once its socket listens, which also says which port it took when
given port 0. A daemon that prints nothing of the kind (vsftpd, proftpd) is
told its port in advance, and is ready when that port answers with FTP's
220 greeting.

Output goes to files, not pipes. A pipe nobody reads fills up and stalls the
server that writes to it, and a pipe closed at the stop can no longer be
read (issue 13: a failure reported as "I/O operation on closed file"
instead of in the server's own words). A file can be read while the server
runs, when it fails to start, and after it is gone.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

READY_LINE = re.compile(r"listening on (\S+):(\d+)")


class ServerFailedToStart(RuntimeError):
    """The server's process started but never became ready."""


class ServerProcess:
    """A server process with its output in files; a context manager that stops it.

    ``output_dir``: where its stdout and stderr are kept (the caller's
    folder: the files stay there for a look after a failed run).
    ``greeting_port``: the loopback port a daemon was told to listen on,
    ready when it greets there; None for a server that prints ``listening on``.
    ``spawn(command, cwd, env, out, err)``: how the process is made, a
    ``subprocess.Popen`` by default; the grader passes its own (its sandbox
    runs student code as another user), which returns an object with
    Popen's ``poll``, ``wait``, ``terminate`` and ``kill``."""

    def __init__(self, name: str, command: list[str], output_dir: Path, *, cwd=None,
                 env: dict | None = None, greeting_port: int | None = None, timeout: float = 15.0,
                 spawn: Callable | None = None):
        self.name = name
        self.command = command
        output_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{_file_name(name)}-{time.monotonic_ns()}"   # unique: a folder may hold several servers' files
        self.out_path = output_dir / f"{stem}.out"
        self.err_path = output_dir / f"{stem}.err"
        # The child writes into its own copies of the files; ours close at once.
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = (spawn or _popen)(command, cwd, env, out, err)
        try:
            self.host, self.port = self._wait_until_ready(greeting_port, timeout)
        except BaseException:
            self.stop()
            raise

    # -- readiness ------------------------------------------------------------------

    def _wait_until_ready(self, greeting_port: int | None, timeout: float) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if greeting_port is None:
                ready = READY_LINE.search(self.stdout())
                if ready:
                    return ready.group(1), int(ready.group(2))
            elif _greets("127.0.0.1", greeting_port):
                return "127.0.0.1", greeting_port
            if self.process.poll() is not None:
                break
            time.sleep(0.005)      # ready within tens of ms; a grading starts some 30 servers
        status = self.process.poll()
        why = f"exited with status {status}" if status is not None else f"not ready after {timeout:g} s"
        raise ServerFailedToStart(f"{self.name} did not start ({why}): {' '.join(self.command)}\n"
                                  f"--- its output ---\n{self.output().strip() or '(none)'}")

    # -- what it said -----------------------------------------------------------------

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout() + self.stderr()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def alive(self) -> bool:
        return self.process.poll() is None

    # -- stopping -----------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL; always reaps. Safe to call twice.

        The ``timeout`` is the server's time to close its connections and
        write the end of its trace before it is killed."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _popen(command: list[str], cwd, env: dict | None, out, err) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)


def _file_name(name: str) -> str:
    """``name`` as part of a file name: no folder separators, no spaces."""
    return re.sub(r"[^\w.-]+", "-", name).strip("-")[:60] or "server"


def _greets(host: str, port: int) -> bool:
    """Whether ``host``:``port`` answers with FTP's 220 greeting right now."""
    try:
        with socket.create_connection((host, port), timeout=1) as probe:
            return probe.recv(4).startswith(b"220")
    except OSError:
        return False
