"""The client driver: runs in the child process, next to the student's code.

The grader never imports a submission. It starts this script in a sandbox
(tests/grading/sandbox.py) and speaks JSON lines with it over two pipes
(its end: tests/grading/remote.py):
one request, one answer. A request names a module of the submission, an
object the driver holds, a method, and the arguments; the answer is the
result, or the exception (its class names, message and the traceback
frames in the submission). Objects that are not plain values stay here and
travel as numbered handles.

Nothing here decides a grade: the driver reports what the student's code
did, and the grader, in its own process, compares that with what it
expected. A submission can tamper with this process as it likes; it only
lies about its own results, which the grader checks against the files, the
sockets and the reference peers it controls.

    python -I driver.py CODE_DIR PACKAGE REQUEST_FD ANSWER_FD

Only the standard library and the kit's ``trace`` package (copied into
CODE_DIR beside the submission) are importable here.
"""

import base64
import dataclasses
import importlib
import json
import os
import socket
import sys

CAP = 2000          # characters of any text the student's code produces


def main() -> None:
    code_dir, package, request_fd, answer_fd = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    sys.path.insert(0, code_dir)        # the submission and the kit's trace, nothing else of the kit
    requests = os.fdopen(request_fd, "r", encoding="utf-8")
    answers = os.fdopen(answer_fd, "w", encoding="utf-8")
    driver = Driver(package, os.path.join(code_dir, package))
    for line in requests:
        answer = driver.handle(json.loads(line))
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


class Driver:
    def __init__(self, package: str, package_dir: str):
        self.package = package
        self.package_dir = package_dir
        self.objects: dict[int, object] = {}

    # --- values across the pipe ------------------------------------------------

    def encode(self, value):
        if value is None or isinstance(value, (bool, str)):
            return value if not isinstance(value, str) else value[:100_000]
        if type(value) in (int, float):
            return value
        if isinstance(value, (bytes, bytearray)) and type(value) in (bytes, bytearray):
            return {"__bytes__": base64.b64encode(bytes(value)).decode("ascii")}
        if type(value) in (list, tuple):
            return {"__list__" if type(value) is list else "__tuple__": [self.encode(v) for v in value]}
        if type(value) in (set, frozenset):
            return {"__set__": [self.encode(v) for v in value]}
        if type(value) is dict and all(type(k) is str for k in value):
            return {"__dict__": {k: self.encode(v) for k, v in value.items()}}
        handle = len(self.objects) + 1
        self.objects[handle] = value
        cls = value if isinstance(value, type) else type(value)
        described = {"__obj__": handle, "type": type(value).__name__,
                     "mro": [c.__name__ for c in type(value).__mro__],
                     "str": _text(value, str), "repr": _text(value, repr)}
        if isinstance(value, int):          # an IntEnum member, a bool-like: its number too
            described["int"] = int(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            described["frozen"] = bool(getattr(cls, "__dataclass_params__").frozen)
            described["fields"] = {f.name: self.encode(getattr(value, f.name, None))
                                   for f in dataclasses.fields(value)}
        return described

    def decode(self, value):
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if isinstance(value, dict):
            if "__bytes__" in value:
                return base64.b64decode(value["__bytes__"])
            if "__ref__" in value:
                return self.objects[value["__ref__"]]
            if "__tuple__" in value:
                return tuple(self.decode(v) for v in value["__tuple__"])
            return {k: self.decode(v) for k, v in value.items()}
        return value

    # --- requests ------------------------------------------------------------------

    def handle(self, request: dict) -> dict:
        try:
            return {"value": self.encode(self.perform(request))}
        except BaseException as error:      # the student's code may raise anything, SystemExit too
            return {"error": self.describe(error)}

    def perform(self, request: dict):
        op = request["op"]
        if op == "import":
            return importlib.import_module(f"{self.package}.{request['module']}")
        if op == "getattr":
            return getattr(self.objects[request["obj"]], request["name"])
        if op == "call":
            target = self.objects[request["obj"]]
            if request.get("name"):
                target = getattr(target, request["name"])
            return target(*self.decode(request.get("args", [])), **self.decode(request.get("kwargs", {})))
        if op == "trace_start":
            import trace                 # the kit's, first on sys.path
            trace.start(request["path"], request["role"])
            return None
        if op == "connect":              # a plain socket the grader's tests can hand to the student's code
            sock = socket.create_connection(tuple(request["address"]), timeout=request.get("timeout"))
            return sock
        if op == "probe":
            return PROBES[request["name"]](self, *self.decode(request.get("args", [])))
        raise ValueError(f"unknown request {op!r}")

    def describe(self, error: BaseException) -> dict:
        """The exception as the grader shows it: class names, message, and the
        frames of the traceback that are in the submission (nothing of the driver).
        ``context`` holds the frames of the exception it was raised while
        handling: given code that turns a student's TimeoutError into
        ConnectionLost hides where the wait was."""
        context = error.__cause__ or error.__context__
        return {"type": type(error).__name__, "mro": [c.__name__ for c in type(error).__mro__],
                "message": _text(error, str), "frames": self.frames(error)[-20:],
                "context": ({"type": type(context).__name__, "message": _text(context, str)[:300],
                             "frames": self.frames(context)[-20:]} if context is not None else None)}

    def frames(self, error: BaseException) -> list:
        out = []
        tb = error.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            path = os.path.abspath(code.co_filename)
            if path.startswith(self.package_dir + os.sep):
                import linecache
                out.append({"file": os.path.relpath(path, os.path.dirname(self.package_dir)),
                            "line": tb.tb_lineno, "function": getattr(code, "co_qualname", code.co_name),
                            "code": linecache.getline(path, tb.tb_lineno).strip()[:200]})
            tb = tb.tb_next
        return out


def _text(value, show) -> str:
    try:
        text = show(value)
    except BaseException as error:       # a __str__ that raises is the student's problem, not ours
        text = f"<{type(value).__name__}: its {show.__name__}() raised {type(error).__name__}>"
    return text[:CAP] if isinstance(text, str) else "<not a str>"


# --- probes: observations that need code in the student's process --------------
# They report what happened; the grader decides what that is worth.

def probe_stats_lock(driver: Driver, session_module):
    """Which counters ServerStats.add changed without holding stats.lock."""
    unlocked: list = []
    armed: list = []

    class Watched(session_module.ServerStats):
        def __setattr__(self, name, value):
            if name in ("transfers", "bytes_sent", "bytes_received", "sessions_open", "sessions_total") \
                    and armed and not self.lock.locked():
                unlocked.append(name)
            super().__setattr__(name, value)

    stats = Watched()
    armed.append(True)
    stats.add(transfers=1, bytes_sent=100)
    return {"counters": [stats.transfers, stats.bytes_sent], "unlocked": sorted(set(unlocked))}


def probe_stats_threads(driver: Driver, session_module, threads: int, per_thread: int):
    """Counters after ``threads`` threads each call add() ``per_thread`` times.

    Left to chance, a missing lock loses an update only when the interpreter
    happens to switch threads between a counter's read and its write: on a
    loaded machine one thread can finish all its adds before the next one
    runs, and the race goes unseen. So each read of a counter here sleeps a
    moment, handing the interpreter to another thread at exactly the worst
    time: without the lock, threads read the same old value and all but one
    of their updates are lost, every run. With the lock the others wait for
    it, and every update lands."""
    import threading
    import time
    counters = ("transfers", "bytes_sent", "bytes_received", "sessions_open", "sessions_total")
    armed: list = []

    class Interleaving(session_module.ServerStats):
        def __getattribute__(self, name):
            value = super().__getattribute__(name)
            if armed and name in counters:
                time.sleep(0.0001)
            return value

    stats = Interleaving()
    start = threading.Barrier(threads)          # all threads begin adding at once

    def adder():
        start.wait()
        for _ in range(per_thread):
            stats.add(transfers=1, bytes_sent=2)

    workers = [threading.Thread(target=adder) for _ in range(threads)]
    armed.append(True)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    armed.clear()
    return [stats.transfers, stats.bytes_sent]


PROBES = {"stats_lock": probe_stats_lock, "stats_threads": probe_stats_threads}


if __name__ == "__main__":
    main()
