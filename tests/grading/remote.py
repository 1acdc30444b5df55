"""The grader's side of the driver (tests/grading/driver.py): the process that
runs the student's client library and functions, and proxies to its objects.

A call goes over a pipe as one JSON line and comes back as a value, a proxy
(``Remote``) to an object the driver keeps, or the student's exception
rebuilt here as a ``StudentError`` (its class names, message and the
traceback frames in the submission). A call that does not return within its
timeout, or that burns a core instead of waiting, fails the test; a driver
that dies says so.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import watch
from .harness import GradingFailure

if TYPE_CHECKING:
    from .sandbox import Sandbox

CALL_TIMEOUT = 8.0                      # seconds one call into the student's code may take (its sockets time out in 3)
CAP = 2000                              # characters of student text the grader passes on


# --- the grader's side of the driver -------------------------------------------------

class StudentError(Exception):
    """An exception raised by the student's code in the child process.

    Its class is made on the fly with the name of the student's exception and
    the nearest built-in exception it derives from as a base, so a test can
    ``except ValueError``; ``is_a(name)`` checks the student's class names."""
    remote_type = "Exception"
    remote_mro: tuple = ()
    frames: list = []               # [{"file", "line", "function", "code"}] in the submission, outermost first
    context = None                  # the exception it was raised while handling: {"type", "message", "frames"}

    def is_a(self, name: str) -> bool:
        return name in self.remote_mro


def make_error(description: dict) -> StudentError:
    import builtins
    base = Exception
    for name in description.get("mro", []):
        candidate = getattr(builtins, name, None)
        # Only Exception's family: a SystemExit or a pytest outcome raised by the
        # submission becomes an ordinary error here, never the grader's control flow.
        if isinstance(candidate, type) and issubclass(candidate, Exception):
            base = candidate
            break
    name = str(description.get("type", "Exception"))[:80]
    message = str(description.get("message", ""))[:CAP]
    attributes = {"remote_type": name, "remote_mro": tuple(description.get("mro", [])),
                  "frames": description.get("frames", []), "context": description.get("context"),
                  "__module__": "student"}
    try:
        cls = type(name if name.isidentifier() else "StudentException", (StudentError, base), attributes)
        error = cls(message)
    except Exception:
        cls = type("StudentException", (StudentError,), attributes)
        error = cls(message)
    return error


class ChildDied(GradingFailure):
    pass


class Child:
    """A driver process running the student's code, and proxies to its objects."""

    def __init__(self, sandbox: Sandbox, cwd: Path):
        self.sandbox = sandbox
        self.cwd = cwd
        self.log = cwd / "driver.out"
        request_read, self._request = os.pipe()
        self._answer, answer_write = os.pipe()
        with open(self.log, "wb") as out:
            argv = [sandbox.executable, "-I", "-u", str(sandbox.code / "_ftpkit_driver.py"), str(sandbox.code),
                    sandbox.package, str(request_read), str(answer_write)]
            self.process = sandbox.start(argv, cwd, out, subprocess.STDOUT, pass_fds=(request_read, answer_write))
        os.close(request_read)
        os.close(answer_write)
        self._buffer = b""
        self.modules: dict[str, Remote] = {}

    def module(self, name: str) -> "Remote":
        if name not in self.modules:
            self.modules[name] = self.request({"op": "import", "module": name})
        return self.modules[name]

    def request(self, message: dict, timeout: float = CALL_TIMEOUT, watch_cpu: bool = True):
        data = (json.dumps(message) + "\n").encode("utf-8")
        try:
            os.write(self._request, data)
        except OSError:
            self._died()
        answer = self._read_line(timeout, watch_cpu)
        if "error" in answer:
            raise make_error(answer["error"])
        return self.decode(answer.get("value"))

    def _read_line(self, timeout: float, watch_cpu: bool = True) -> dict:
        # Waiting the whole timeout for a call that cannot return (a loop that
        # burns a core, or a deadlock with everyone asleep) would make a hung
        # submission cost seconds a test: the watch says when to stop (watch.py).
        started = time.monotonic()
        deadline, wait = started + timeout, watch.current().wait(spin=watch_cpu)
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the student's code did not return within {timeout:g} s")
            ready, _, _ = select.select([self._answer], [], [], min(left, watch.CHECK))
            if not ready:
                reason = wait.hopeless()
                if reason:
                    # The call will never answer: end the driver, so that what the
                    # test does next (closing the client) fails at once, not in 8 s.
                    self.process.kill()
                    raise TimeoutError(f"the student's code did not return: {reason}")
                continue
            chunk = os.read(self._answer, 1 << 20)
            if not chunk:
                self._died()
            self._buffer += chunk
            if len(self._buffer) > 64 << 20:
                raise GradingFailure("the student's code answers the grader", "a reply under 64 MiB",
                                     "more than 64 MiB")
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError:
            raise GradingFailure("the driver's answer is JSON", "a JSON line", repr(line[:200])) from None

    def _died(self):
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        try:
            tail = self.log.read_text(errors="replace")[-1500:].strip()
        except OSError:
            tail = ""
        raise ChildDied("the process running your code stays alive while the grader calls it",
                        "an answer", f"it ended (exit status {self.process.returncode})"
                        + (f"; it printed: {tail[-CAP:]}" if tail else ""),
                        "something in your code ended the process (sys.exit, os._exit, a crash, a resource limit)")

    def decode(self, value):
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if isinstance(value, dict):
            if "__bytes__" in value:
                return base64.b64decode(value["__bytes__"])
            if "__list__" in value:
                return [self.decode(v) for v in value["__list__"]]
            if "__tuple__" in value:
                return tuple(self.decode(v) for v in value["__tuple__"])
            if "__set__" in value:
                return [self.decode(v) for v in value["__set__"]]
            if "__dict__" in value:
                return {k: self.decode(v) for k, v in value["__dict__"].items()}
            if "__obj__" in value:
                fields = value.get("fields")
                return Remote(self, value["__obj__"], str(value.get("type"))[:80], tuple(value.get("mro", ())),
                              str(value.get("str", ""))[:CAP], str(value.get("repr", ""))[:CAP],
                              {k: self.decode(v) for k, v in fields.items()} if fields is not None else None,
                              bool(value.get("frozen")), value.get("int"))
        return value

    def encode(self, value):
        if isinstance(value, Remote):
            return {"__ref__": value._handle}
        if isinstance(value, (bytes, bytearray)):
            return {"__bytes__": base64.b64encode(bytes(value)).decode("ascii")}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v) for v in value]}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, dict):
            return {k: self.encode(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    def call(self, target: "Remote", name: str | None, args, kwargs, timeout: float = CALL_TIMEOUT):
        return self.request({"op": "call", "obj": target._handle, "name": name,
                             "args": self.encode(list(args)), "kwargs": self.encode(kwargs)}, timeout)

    def trace_start(self, path: Path, role: str) -> None:
        self.request({"op": "trace_start", "path": str(path), "role": role})

    def connect(self, address, timeout: float | None = None) -> "Remote":
        """A plain socket in the child, connected to ``address``, for the student's functions."""
        return self.request({"op": "connect", "address": list(address), "timeout": timeout})

    def probe(self, name: str, *args, timeout: float = CALL_TIMEOUT):
        # A probe may be busy on purpose (threads racing on the counters): no spin watch.
        return self.request({"op": "probe", "name": name, "args": self.encode(list(args))}, timeout,
                            watch_cpu=False)

    def close(self) -> None:
        for fd in (self._request, self._answer):
            try:
                os.close(fd)
            except OSError:
                pass


class Remote:
    """An object of the student's, held by the driver: attribute reads and calls go there.

    Frozen dataclass values (a Command, a Reply) carry a copy of their fields,
    read here, and compare equal by class name and fields."""

    def __init__(self, child: Child, handle: int, type_name: str, mro: tuple, text: str, shown: str,
                 fields: dict | None, frozen: bool, number):
        object.__setattr__(self, "_child", child)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_mro", mro)
        object.__setattr__(self, "_text", text)
        object.__setattr__(self, "_shown", shown)
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_frozen", frozen)
        object.__setattr__(self, "_number", number)

    def __getattr__(self, name: str):
        if name.startswith("__") and name not in ("__file__", "__name__"):
            raise AttributeError(name)      # Python's own probing (copy, pickle, pytest) stays here
        fields = object.__getattribute__(self, "_fields")
        if fields is not None and self._frozen and name in fields:
            return fields[name]
        return self._child.request({"op": "getattr", "obj": self._handle, "name": name})

    def __call__(self, *args, **kwargs):
        return self._child.call(self, None, args, kwargs)

    def is_a(self, name: str) -> bool:
        return name in self._mro

    def __eq__(self, other):
        if isinstance(other, Remote):
            if self._fields is not None and other._fields is not None:
                return (self._type, self._fields) == (other._type, other._fields)
            return self._handle == other._handle and self._child is other._child
        if self._number is not None and isinstance(other, int):
            return self._number == other
        return NotImplemented

    def __hash__(self):
        return hash((self._type, self._handle))

    def __int__(self):
        if self._number is None:
            raise TypeError(f"{self._type} is not a number")
        return self._number

    def __str__(self):
        return self._text

    def __repr__(self):
        return self._shown


def is_a(value, name: str) -> bool:
    """Whether a value the student's code returned is of its class ``name``."""
    return isinstance(value, Remote) and value.is_a(name)
