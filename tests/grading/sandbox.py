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

import compileall
import fcntl
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import watch
from .harness import REPO_ROOT
from .launcher import Forked, Launcher
from .remote import Child

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
        # The kit's trace package is the same in every grading: compiled once, in
        # the kit, and copied with its .pyc files, which compile_dir below then
        # finds up to date (copytree keeps the sources' times). Where the kit is
        # read-only nothing is written there, and the copy is compiled as before.
        compileall.compile_dir(str(REPO_ROOT / "trace"), quiet=2, workers=1)
        shutil.copytree(REPO_ROOT / "trace", self.code / "trace", ignore=shutil.ignore_patterns("samples", ".*"))
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
                                 env=self.environment(self.base), cwd=self.base)
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
                _wait_watched(process, timeout)
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

    def pids(self) -> list[int]:
        """The submission's processes running now (what the grader's watch looks at)."""
        return self._student_pids() if self.isolated else self._session_pids()

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

    def driver(self, cwd: Path) -> Child:
        return Child(self, cwd)


class Stuck(subprocess.TimeoutExpired):
    """A program of the submission that cannot end by itself (watch.py says why)."""

    def __init__(self, cmd, timeout: float, reason: str):
        super().__init__(cmd, timeout)
        self.reason = reason


def _wait_watched(process: Forked, timeout: float) -> None:
    """Wait for ``process`` to end, ``timeout`` at most, or until the grader's
    watch finds that it hangs (then raise Stuck with the reason)."""
    wait, deadline = watch.current().wait(), time.monotonic() + timeout
    while True:
        try:
            process.wait(timeout=min(watch.CHECK, max(0.0, deadline - time.monotonic())))
            return
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise
            reason = wait.hopeless()
            if reason:
                raise Stuck(process.args, timeout, reason) from None


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
