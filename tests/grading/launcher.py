"""The grader's end of the fork server (tests/grading/forkserver.py).

``Launcher.start`` takes what ``subprocess.Popen`` would (``python -I -u
SCRIPT ARGS``, a folder, an environment, the standard files and the
descriptors to pass) and returns a ``Forked``, which answers ``poll``,
``wait``, ``terminate`` and ``kill`` as a ``Popen`` does. The process is
the fork server's child, not ours: its end is reported over the socket.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

ANSWER_TIMEOUT = 10.0       # seconds a fork may take on a loaded machine


class LauncherGone(RuntimeError):
    pass


class Forked:
    """A process of the submission, started by the fork server."""

    def __init__(self, launcher: "Launcher", pid: int, argv: list[str]):
        self._launcher = launcher
        self.pid = pid
        self.args = argv
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._launcher.collect(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._launcher.collect(0.5 if left is None else min(left, 0.5))
        return self.returncode

    def send_signal(self, number: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, number)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Launcher:
    """Starts the fork server with ``wrap`` (the sandbox's namespace) and talks to it."""

    def __init__(self, python: str, wrap: list[str], uid: int, gid: int, limits: dict, script: Path,
                 preload: Path, env: dict, cwd: Path, modules: tuple[str, ...] = ()):
        self._socket, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [*wrap, python, "-I", "-u", "-B", str(script), str(theirs.fileno()), str(uid), str(gid),
                json.dumps({int(k): v for k, v in limits.items()}), str(preload), *modules]
        self.process = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), env=env, cwd=cwd,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self._lock = threading.RLock()
        self._children: dict[int, Forked] = {}
        self._ended: dict[int, int] = {}        # ends reported before their pid was known here

    def start(self, argv: list[str], cwd: Path, env: dict, files: dict[int, int], path: list[str] = ()) -> Forked:
        """Run ``argv`` (``[SCRIPT, ARG...]`` or ``["-m", MODULE, ARG...]``) with ``files``
        {descriptor in the child: ours}, ``path`` first on its sys.path."""
        request = json.dumps({"argv": argv, "cwd": str(cwd), "env": env, "fds": list(files),
                              "path": [str(p) for p in path]}).encode()
        with self._lock:
            try:
                socket.send_fds(self._socket, [request], list(files.values()))
            except OSError as error:
                raise LauncherGone(f"the fork server is gone ({error})") from None
            deadline = time.monotonic() + ANSWER_TIMEOUT
            while True:
                message = self._receive(deadline - time.monotonic())
                if message is None:
                    raise LauncherGone(f"the fork server did not answer within {ANSWER_TIMEOUT:g} s")
                if "pid" in message:
                    child = Forked(self, message["pid"], argv)
                    self._children[child.pid] = child
                    if child.pid in self._ended:
                        child.returncode = self._ended.pop(child.pid)
                    return child
                if "error" in message:
                    raise LauncherGone(f"the fork server could not start {argv[0]}: {message['error']}")
                self._note_end(message)

    def collect(self, timeout: float) -> None:
        """Take in the ends the fork server reported, waiting up to ``timeout`` for one."""
        with self._lock:
            message = self._receive(timeout)
            while message is not None:
                self._note_end(message)
                message = self._receive(0)

    def _note_end(self, message: dict) -> None:
        pid, code = message.get("exited"), message.get("returncode")
        if pid in self._children:
            self._children.pop(pid).returncode = code
        elif pid is not None:
            self._ended[pid] = code

    def _receive(self, timeout: float) -> dict | None:
        ready, _, _ = select.select([self._socket], [], [], max(0.0, timeout))
        if not ready:
            return None
        data = self._socket.recv(1 << 16)
        if not data:
            # The fork server ended: every child it had is an orphan now, and no
            # end will be reported. Say so to whoever waits, as "killed".
            for child in self._children.values():
                child.returncode = -signal.SIGKILL
            self._children.clear()
            return None
        return json.loads(data)

    def close(self) -> None:
        try:
            self._socket.close()
        finally:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
