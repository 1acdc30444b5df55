"""Where student code runs: a sandbox the grader's own process stays out of.

Every process of the submission (its server, its client program, and the
driver that runs its ``FtpClient`` and its pure functions) is started here:

* from a private copy of the submission beside a copy of the kit's ``trace``
  package (``python -I``: no PYTHONPATH, no user site, no current folder), so
  ``import solutions`` and ``import tests`` fail and ``trace`` is the kit's;
* with an environment of its own (no ``PYTEST_*``, no instructor paths);
* in its own session (setsid), with limits on processes, file size, memory,
  CPU time and open files, so a fork bomb, a disk filler or a memory hog
  costs only its own tests.

As root (CI, Gradescope) it also runs as an unprivileged user
(``ftpkit-student0``, ``ftpkit-student1``...: one per grading running at
once, made if missing), in a mount namespace in which the kit's folder (the
tests, the hidden tests, the solutions, the results) is covered by an empty
folder; and at the end of every test every process of that user is killed.
Without root the grader says in one line that isolation is weaker and goes
on: a student grading their own laptop is not cheating anyone.
"""

from __future__ import annotations

import base64
import compileall
import fcntl
import json
import os
import pwd
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .harness import REPO_ROOT, GradingFailure
from .launcher import Forked, Launcher

STUDENT_USER = "ftpkit-student"        # + a slot number: one user per grading running at once
SLOTS = 32
SLOT_VARIABLE = "FTPKIT_STUDENT_SLOT"   # set: this slot only (see claim_student_user)
LOCK_DIR = Path("/run/ftpkit-grading")
LIMITS = {                              # per process of the submission
    resource.RLIMIT_NPROC: 256,         # processes and threads of the student user (a fork bomb stops here)
    resource.RLIMIT_FSIZE: 64 << 20,    # bytes in any one file (a disk filler stops here)
    resource.RLIMIT_AS: 2 << 30,        # bytes of address space (a memory hog stops here)
    resource.RLIMIT_CPU: 60,            # seconds of CPU (a busy loop stops here)
    resource.RLIMIT_NOFILE: 1024,
}
DRIVER = Path(__file__).with_name("driver.py")
FORKSERVER = Path(__file__).with_name("forkserver.py")
CALL_TIMEOUT = 8.0                      # seconds one call into the student's code may take (its sockets time out in 3)
SPIN_CHECK = 0.25                       # while a call runs, its CPU use is looked at this often (seconds)
SPIN_CPU, SPIN_SHARE = 1.0, 0.4         # a call that used 1 s of CPU, 40% of the time waited, is spinning
CAP = 2000                              # characters of student text the grader passes on
WEAKER = ("ftpkit grader: isolation is weaker: not root (or --isolation off), so student code runs as this "
          "user and could read the tests or outlive them; grading goes on")


def is_root() -> bool:
    return os.geteuid() == 0


# --- the student user -----------------------------------------------------------

def claim_student_user() -> tuple[str, int, int, object]:
    """A student user no other grading on this machine is using: (name, uid, gid, lock).

    Each grading kills every process of its user after every test, so two
    gradings at once (a batch, the meta-tests) must never share one. A caller
    that checks the user after the grading (the meta-tests look for survivors)
    pins the slot with FTPKIT_STUDENT_SLOT, so no other grading takes the user
    over in between."""
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    pinned = os.environ.get(SLOT_VARIABLE)
    for slot in [int(pinned)] if pinned else range(SLOTS):
        lock = open(LOCK_DIR / f"slot{slot}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        name = f"{STUDENT_USER}{slot}"
        user = _ensure_user(name)
        return name, user.pw_uid, user.pw_gid, lock
    if pinned:
        raise RuntimeError(f"student user {STUDENT_USER}{pinned} ({SLOT_VARIABLE}) is busy with another grading")
    raise RuntimeError(f"all {SLOTS} student users are busy: too many gradings at once")


def _ensure_user(name: str):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    # useradd takes /etc/passwd's lock and fails if another useradd holds it: one at a time.
    with open(LOCK_DIR / "useradd.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", "--user-group", name],
                           check=True, capture_output=True)
    return pwd.getpwnam(name)


def _mount_namespaces_work() -> bool:
    """Whether this machine lets root make a mount namespace (a container may not)."""
    try:
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "true"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _limit_resources() -> None:         # runs in the child between fork and exec
    for limit, value in LIMITS.items():
        soft, hard = resource.getrlimit(limit)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):
            pass


# --- the sandbox of one grading ----------------------------------------------------

def _temp_root_others_can_reach() -> str:
    """The temporary folder, if the student user can walk down to it; else /tmp.

    A grader often runs inside a private 0700 temporary folder (pytest's, a
    batch grading's): the unprivileged student user could not reach its own
    files below it, and the student's Python would fail to open them.
    """
    place = Path(tempfile.gettempdir()).resolve()
    if all(os.stat(folder).st_mode & 0o001 for folder in (place, *place.parents)):
        return str(place)
    return "/tmp"


class Sandbox:
    """The copy of the submission, the student user, and the processes started."""

    def __init__(self, package: str, directory: Path, hide: list[Path] = (), isolate: bool = True):
        self.package = package
        self.isolated = is_root() and isolate
        self.user = self.uid = self.gid = None
        self._lock = None
        if self.isolated:
            self.user, self.uid, self.gid, self._lock = claim_student_user()
        self.base = Path(tempfile.mkdtemp(prefix="ftpkit-grading-", dir=_temp_root_others_can_reach()))
        os.chmod(self.base, 0o711)     # the student may reach its own folders here, not list them
        self.code = self.base / "code"
        self._copy_code(directory)
        self.hidden = self._paths_to_hide([REPO_ROOT, directory.parent, *hide])
        self.namespaces = self.isolated and _mount_namespaces_work()
        self._modes: dict[Path, int] = {}
        if self.isolated and not self.namespaces:
            self._protect_by_permissions()
        self.processes: list[subprocess.Popen] = []
        self.sessions: set[int] = set()
        self._count = 0
        if self.isolated:
            # A grading killed before it could clean up leaves its student processes
            # behind: whatever still runs as this user now is nobody's, and goes.
            self.kill_all()
        self.executable = self._student_python() if self.isolated else sys.executable
        # Every process of the submission is forked from here (see forkserver.py):
        # in the namespace, dropping to the student user itself.
        self.launcher = Launcher(self.executable, self._namespace(), self.uid if self.isolated else -1,
                                 self.gid if self.isolated else -1, LIMITS, self.code / "_ftpkit_forkserver.py",
                                 self.code, self.environment(self.base), self.base)

    def _copy_code(self, directory: Path) -> None:
        """The submission and the kit's trace package, readable, owned by root."""
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "samples", ".*")
        shutil.copytree(directory, self.code / self.package, ignore=ignore, symlinks=False)
        shutil.copytree(REPO_ROOT / "trace", self.code / "trace", ignore=ignore)
        shutil.copy2(DRIVER, self.code / "_ftpkit_driver.py")
        shutil.copy2(FORKSERVER, self.code / "_ftpkit_forkserver.py")
        (self.code / "_ftpkit_run.py").write_text(RUN_MODULE, encoding="utf-8")
        compileall.compile_dir(str(self.code), quiet=2, workers=1)   # the student user cannot write .pyc
        for folder, dirs, files in os.walk(self.code):
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)

    def _protect_by_permissions(self) -> None:
        """Where no mount namespace can be made (a container without
        CAP_SYS_ADMIN): the folders to hide are closed to other users for the
        grading (mode 0700), and given their modes back at the end."""
        print("ftpkit grader: no mount namespaces here: the kit is hidden from student code by folder "
              "permissions for the grading", file=sys.stderr)
        for path in self.hidden:
            try:
                mode = path.stat().st_mode & 0o7777
                self._modes[path] = mode
                os.chmod(path, mode & 0o700)
            except OSError:
                pass

    def _paths_to_hide(self, paths) -> list[Path]:
        """Folders covered in the student's mount namespace: never one that holds
        the sandbox or Python itself."""
        keep = [self.base, Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parent]
        out = []
        for path in paths:
            path = Path(path).resolve()
            if path == Path("/") or any(k == path or path in k.parents for k in keep):
                continue
            if path not in out:
                out.append(path)
        return out

    def _student_python(self) -> str:
        """An interpreter the student user can run with its standard library:
        the grader's own, or, when that one lives where the user cannot read
        (pyenv under /root), the system's Python of the same version."""
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        check = "import sys, json; print(sys.version_info[0], sys.version_info[1], sys.prefix)"
        for candidate in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
            if not os.path.exists(candidate):
                continue
            run = subprocess.run(self.command([candidate, "-I", "-c", check]), capture_output=True, text=True,
                                 env=self.environment(self.base), cwd=self.base, preexec_fn=_limit_resources)
            words = run.stdout.split()
            if run.returncode == 0 and words[:2] == version.split(".") and \
                    (candidate != sys.executable or words[2] == sys.prefix):
                return candidate
        raise RuntimeError(f"no Python {version} that the student user {self.user} can run "
                           f"({sys.executable} is out of its reach)")

    # --- folders -----------------------------------------------------------------

    def folder(self, name: str) -> Path:
        """A fresh folder the student's processes may read and write."""
        self._count += 1
        path = self.base / f"t{self._count}-{name}"[:60]
        path.mkdir()
        self.give(path)
        return path

    def give(self, path: Path) -> None:
        """Hand a folder (and what is in it) to the student user."""
        if not self.isolated:
            return
        for folder, dirs, files in os.walk(path):
            os.chown(folder, self.uid, self.gid)
            for name in files:
                os.chown(os.path.join(folder, name), self.uid, self.gid)

    # --- processes -------------------------------------------------------------------

    def environment(self, home: Path) -> dict:
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                "HOME": str(home), "TMPDIR": str(home), "PYTHONIOENCODING": "utf-8"}

    def _namespace(self) -> list[str]:
        """The prefix that runs a command in a mount namespace with the kit hidden (as root)."""
        if not (self.isolated and self.namespaces):
            return []
        mounts = " && ".join(f"mount -t tmpfs -o size=4k,mode=0555 ftpkit-hidden {_quote(p)}" for p in self.hidden)
        script = (f"{mounts} && " if mounts else "") + 'exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh"]

    def command(self, argv: list[str]) -> list[str]:
        """Wrap argv: as root, a mount namespace with the kit hidden, then the student user."""
        if not self.isolated:
            return argv
        return [*self._namespace(), "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--inh-caps=-all", "--", *argv]

    def python(self, module: str, args: list[str]) -> list[str]:
        """``python -m module args`` from the sandbox's copy, and nothing else of the kit."""
        return [self.executable, "-I", "-u", str(self.code / "_ftpkit_run.py"), module, *args]

    def start(self, argv: list[str], cwd: Path, stdout, stderr, stdin=subprocess.DEVNULL, pass_fds=()) -> Forked:
        """Start ``python -I -u SCRIPT ARGS`` of the submission (``self.python`` or the
        driver): stdout a file, stderr a file or STDOUT, stdin DEVNULL or a descriptor."""
        python, *flags, script = argv[:4]
        if python != self.executable or flags != ["-I", "-u"]:
            raise ValueError(f"the sandbox runs only `{self.executable} -I -u SCRIPT ...`, not {argv[:4]}")
        with open(os.devnull, "rb") as devnull:
            files = {0: devnull.fileno() if stdin == subprocess.DEVNULL else stdin,
                     1: stdout.fileno(),
                     2: stdout.fileno() if stderr == subprocess.STDOUT else stderr.fileno(),
                     **{fd: fd for fd in pass_fds}}
            process = self.launcher.start([script, *argv[4:]], cwd, self.environment(cwd), files)
        self.processes.append(process)
        self.sessions.add(process.pid)
        return process

    def run(self, argv: list[str], cwd: Path, input: str, timeout: float) -> subprocess.CompletedProcess:
        """Run a program of the submission to its end, ``input`` on its stdin (its output capped)."""
        read_end, write_end = os.pipe()
        with tempfile.TemporaryFile() as out:
            try:
                process = self.start(argv, cwd, out, subprocess.STDOUT, stdin=read_end)
            finally:
                os.close(read_end)
            threading.Thread(target=_write_and_close, args=(write_end, input.encode("utf-8")), daemon=True).start()
            try:
                process.wait(timeout=timeout)
            finally:
                self.kill_all()
            out.seek(0)
            text = out.read(200_000).decode("utf-8", "replace")
        return subprocess.CompletedProcess(argv, process.returncode, text, "")

    def kill_all(self) -> None:
        """Every process of the submission ends here: nothing survives a test."""
        if self.isolated:
            for _ in range(200):
                pids = self._student_pids()
                if not pids:
                    break
                # Stop them all first, then kill: a stopped process cannot fork, so a
                # fork bomb cannot replace the processes already killed. (Killing as
                # the student user, kill -1, needs an exec that RLIMIT_NPROC refuses
                # once a fork bomb has used up the user's processes.)
                for signal_number in (signal.SIGSTOP, signal.SIGKILL):
                    for pid in pids:
                        try:
                            os.kill(pid, signal_number)
                        except OSError:
                            pass
            else:
                print(f"ftpkit grader: processes of {self.user} survived 200 rounds of kills", file=sys.stderr)
        else:
            for pid in self._session_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for process in self.processes:
            try:
                process.kill()
            except OSError:
                pass
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.processes.clear()

    def _student_pids(self) -> list[int]:
        pids = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                # /proc/PID belongs to the process's user: one stat, no text to parse,
                # for every process on the machine; the few of the student read further.
                if entry.stat().st_uid != self.uid:
                    continue
                with open(f"/proc/{entry.name}/stat") as stat:
                    state = stat.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":                  # a zombie is dead already: its parent reaps it
                pids.append(int(entry.name))
        return pids

    def _session_pids(self) -> list[int]:
        pids = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) in self.sessions:      # the session id
                pids.append(int(entry.name))
        return pids

    def close(self) -> None:
        self.kill_all()
        self.launcher.close()
        shutil.rmtree(self.base, ignore_errors=True)
        for path, mode in self._modes.items():
            try:
                os.chmod(path, mode)
            except OSError:
                pass
        self._modes.clear()
        if self._lock is not None:
            self._lock.close()

    # --- the driver --------------------------------------------------------------------

    def driver(self, cwd: Path) -> "Child":
        return Child(self, cwd)


def _write_and_close(fd: int, data: bytes) -> None:
    try:
        with open(fd, "wb") as pipe:
            pipe.write(data)
    except OSError:                 # the program ended without reading it all
        pass


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "'\\''") + "'"


RUN_MODULE = '''\
"""python -I _ftpkit_run.py MODULE ARGS...: run MODULE as python -m would, from this folder only."""
import os, runpy, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
module = sys.argv.pop(1)
runpy.run_module(module, run_name="__main__", alter_sys=True)
'''


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
        started = time.monotonic()
        deadline, cpu_before = started + timeout, self.cpu_seconds()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the student's code did not return within {timeout:g} s")
            ready, _, _ = select.select([self._answer], [], [], min(left, SPIN_CHECK))
            if not ready:
                if watch_cpu:
                    self._check_not_spinning(started, cpu_before)
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

    def _check_not_spinning(self, started: float, cpu_before: float) -> None:
        """A call into network code that burns a core instead of waiting (a loop
        that never blocks: most often, recv returned b'' and the loop went on)
        fails as soon as that is plain, not at the end of its timeout."""
        spent, waited = self.cpu_seconds() - cpu_before, time.monotonic() - started
        if spent >= SPIN_CPU and spent >= SPIN_SHARE * waited:
            raise TimeoutError(f"the student's code did not return: it used {spent:.1f} s of CPU in the "
                               f"{waited:.1f} s the grader waited, a loop that never waits for the network")

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

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def close(self) -> None:
        for fd in (self._request, self._answer):
            try:
                os.close(fd)
            except OSError:
                pass


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its live threads, from /proc; 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


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
