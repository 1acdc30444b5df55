"""The suite leaves the machine as it found it: a check around the whole run.

Every test runs as root in CI, so a careless path is real damage (issue 10:
a test once replaced /dev/null with a regular file). This module is a pytest
plugin, loaded by tests/conftest.py. At the start of the session it takes a
snapshot; at the end, after every fixture has been torn down, it compares and
FAILS the run, naming each thing the tests left behind:

- an entry under /dev whose type, device number or inode changed, or that
  appeared or disappeared (the dynamic folders /dev/shm, /dev/pts and
  /dev/mqueue are checked as folders, not entry by entry);
- a process the tests started that is still running: a descendant of this
  pytest process, or any process carrying this session's token in its
  environment (daemons such as vsftpd detach from their parent but keep the
  environment), or whose command line names this session's temporary folder;
- a network namespace (``ip netns list``) that did not exist before;
- anything left in the run's own temporary folder. The check points TMPDIR
  (and ``tempfile.tempdir``) at a fresh ``ftpkit-tests-*`` folder for the
  whole run, so every ``mkdtemp`` of the tests and of the programs they start
  lands there; whatever is still in it at the end was left by this run.
  (pytest's basetemp is placed before the switch and is fine.)

Processes and temp folders are attributed to this run exactly (token,
ancestry, private TMPDIR), so another test run on the same machine is never
blamed; the system temp folder is not scanned for that reason (several runs
of the kit's tools make ``ftpkit-*`` folders there on a shared machine).
Namespaces have no owner to ask: a new one is blamed only if it is still
there after a short grace period and no process of another run lives in it,
so on a machine where several runs overlap an empty one can still be another
run's (the message says so). Leaked processes are terminated after they are
reported (they are provably ours) and the private temp folder is removed;
nothing else is touched, because the check cannot know what a stray entry
under /dev or a namespace is for.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

TOKEN_VARIABLE = "FTPKIT_TEST_SESSION"
DEV_DYNAMIC_FOLDERS = ("shm", "pts", "mqueue")     # contents change on their own
GRACE_SECONDS = 3.0


# --- /dev ------------------------------------------------------------------

def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISDIR, "folder"), (stat.S_ISLNK, "symbolic link"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISREG, "regular file")):
        if test(mode):
            return name
    return "unknown"


@dataclass(frozen=True)
class DevEntry:
    kind: str
    rdev: tuple[int, int] | None
    inode: int

    def __str__(self) -> str:
        device = f" {self.rdev[0]},{self.rdev[1]}" if self.rdev else ""
        return f"{self.kind}{device} (inode {self.inode})"


def snapshot_dev(root: Path = Path("/dev")) -> dict[str, DevEntry]:
    """(type, device number, inode) of every entry under ``root``, without following links."""
    entries: dict[str, DevEntry] = {}

    def record(path: str) -> os.stat_result | None:
        try:
            info = os.lstat(path)
        except OSError:           # vanished between listing and stat
            return None
        device = (os.major(info.st_rdev), os.minor(info.st_rdev)) \
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else None
        entries[path] = DevEntry(_kind(info.st_mode), device, info.st_ino)
        return info

    record(str(root))
    for folder, subfolders, files in os.walk(root, followlinks=False):
        keep = []
        for name in subfolders:
            path = os.path.join(folder, name)
            info = record(path)
            # Only walk into real folders, and not into the ones whose
            # contents are supposed to change (ptys, shared memory).
            if info and stat.S_ISDIR(info.st_mode) and not (
                    folder == str(root) and name in DEV_DYNAMIC_FOLDERS):
                keep.append(name)
        subfolders[:] = keep
        for name in files:
            record(os.path.join(folder, name))
    return entries


def compare_dev(before: dict[str, DevEntry], after: dict[str, DevEntry]) -> list[str]:
    problems = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        if new is None:
            problems.append(f"{path} was removed (it was a {old})")
        elif old is None:
            problems.append(f"{path} was created: a {new}")
        else:
            problems.append(f"{path} changed: was a {old}, now a {new}")
    return problems


# --- processes ---------------------------------------------------------------

@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    start: int              # clock ticks after boot: (pid, start) names a process uniquely
    cmdline: str

    def __str__(self) -> str:
        return f"process {self.pid} ({self.cmdline[:160] or '?'})"


def _read_proc(pid: int) -> Proc | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    cmdline = command.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return Proc(pid, int(fields[1]), fields[0], int(fields[19]), cmdline)


def list_processes() -> dict[int, Proc]:
    processes = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            process = _read_proc(int(entry))
            if process:
                processes[process.pid] = process
    return processes


def _has_token(pid: int, token: str) -> bool:
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{TOKEN_VARIABLE}={token}".encode() in environment.split(b"\0")


def descendants(root_pid: int, processes: dict[int, Proc]) -> set[int]:
    children: dict[int, list[int]] = {}
    for process in processes.values():
        children.setdefault(process.ppid, []).append(process.pid)
    found, todo = set(), [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


# --- namespaces and temp folders ---------------------------------------------

def network_namespaces() -> set[str]:
    ip = shutil.which("ip")
    if ip is None:
        return set()
    try:
        listing = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def namespace_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def process_namespace_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def leftovers(folder: Path) -> list[str]:
    """What is left in the run's private temporary folder.

    ``pytest-of-USER`` is the basetemp of the pytest runs that tests start
    (a student's grading, a release's ``pytest``): pytest keeps its last three
    on purpose, so it is pytest's, not a leak; it goes with the folder.
    """
    try:
        return sorted(name for name in os.listdir(folder) if not name.startswith("pytest-of-"))
    except OSError:
        return []


# --- the check ---------------------------------------------------------------

@dataclass
class LeakCheck:
    """A snapshot of the machine, and what changed since it was taken."""

    token: str
    own_pid: int
    session_paths: list[str]
    temp_folder: Path
    dev_root: Path = Path("/dev")

    def __post_init__(self) -> None:
        self.dev = snapshot_dev(self.dev_root)
        self.processes_before = {(p.pid, p.start) for p in list_processes().values()}
        self.namespaces = network_namespaces()

    def leaked_processes(self) -> list[Proc]:
        processes = list_processes()
        ours = descendants(self.own_pid, processes)
        leaked = []
        for process in processes.values():
            if process.pid == self.own_pid or process.state in "ZX":
                continue            # a zombie holds nothing; it goes when pytest exits
            if (process.pid, process.start) in self.processes_before:
                continue
            if (process.pid in ours or _has_token(process.pid, self.token)
                    or any(path in process.cmdline for path in self.session_paths)):
                leaked.append(process)
        return sorted(leaked, key=lambda p: p.pid)

    def foreign_namespaces(self, names: list[str]) -> set[str]:
        """The namespaces among ``names`` in which a process of another run lives (not ours to blame)."""
        inodes = {namespace_inode(name): name for name in names}
        processes = list_processes()
        ours = descendants(self.own_pid, processes) | {self.own_pid}
        foreign = set()
        for process in processes.values():
            if process.pid in ours or _has_token(process.pid, self.token):
                continue
            name = inodes.get(process_namespace_inode(process.pid))
            if name is not None:
                foreign.add(name)
        return foreign

    def problems(self, grace: float = GRACE_SECONDS) -> tuple[list[str], list[Proc]]:
        """What the run left behind, as one line each, and the leaked processes.

        Things being torn down right now (a daemon that got SIGTERM, a
        namespace being deleted) get ``grace`` seconds to go.
        """
        deadline = time.monotonic() + grace
        while True:
            processes = self.leaked_processes()
            namespaces = sorted(network_namespaces() - self.namespaces)
            namespaces = [name for name in namespaces if name not in self.foreign_namespaces(namespaces)]
            temps = leftovers(self.temp_folder)
            if not (processes or namespaces or temps) or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        lines = compare_dev(self.dev, snapshot_dev(self.dev_root))
        lines += [f"{p} is still running (started by the tests)" for p in processes]
        lines += [f"network namespace {name} is still there ('ip netns del {name}'; made during "
                  f"this run, though on a shared machine another run may have made it)" for name in namespaces]
        lines += [f"temporary {'folder' if (self.temp_folder / name).is_dir() else 'file'} "
                  f"{self.temp_folder / name} is still there" for name in temps]
        return lines, processes


def terminate(processes: list[Proc]) -> None:
    """Stop leaked processes: SIGTERM, then SIGKILL after 3 s (checking each is still the same one)."""
    alive = list(processes)
    for signal_number, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        for process in alive:
            current = _read_proc(process.pid)
            if current and current.start == process.start:
                try:
                    os.kill(process.pid, signal_number)
                except OSError:
                    pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            alive = [p for p in alive if (c := _read_proc(p.pid)) and c.start == p.start and c.state not in "ZX"]
            if not alive:
                return
            time.sleep(0.05)


# --- pytest hooks (tests/conftest.py imports these) ---------------------------

_CHECK_KEY = pytest.StashKey[LeakCheck]()
_REPORT_KEY = pytest.StashKey[list]()
_SAVED_KEY = pytest.StashKey[tuple]()


def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.getoption("collectonly", False):
        return
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    factory = getattr(session.config, "_tmp_path_factory", None)       # absent with -p no:tmpdir
    basetemp = str(factory.getbasetemp()) if factory else None          # placed before TMPDIR moves
    private_temp = Path(tempfile.mkdtemp(prefix=f"ftpkit-tests-{token}-"))
    # Traversable, not listable: the grader's unprivileged student user must
    # reach the sandbox folders made in here (tests/grading/sandbox.py).
    os.chmod(private_temp, 0o711)
    session.config.stash[_SAVED_KEY] = (os.environ.get("TMPDIR"), tempfile.tempdir)
    os.environ[TOKEN_VARIABLE] = token          # inherited by every process the tests start
    os.environ["TMPDIR"] = str(private_temp)
    tempfile.tempdir = str(private_temp)
    session.config.stash[_CHECK_KEY] = LeakCheck(token, os.getpid(), [p for p in (basetemp, str(private_temp)) if p],
                                                 private_temp)


@pytest.hookimpl(trylast=True)      # after pytest has torn down the session's fixtures
def pytest_sessionfinish(session: pytest.Session) -> None:
    check = session.config.stash.get(_CHECK_KEY, None)
    if check is None:
        return
    lines, processes = check.problems()
    terminate(processes)
    if processes:
        lines.append(f"(the leak check terminated the {len(processes)} leaked process(es))")
    saved_tmpdir, tempfile.tempdir = session.config.stash[_SAVED_KEY]
    if saved_tmpdir is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved_tmpdir
    shutil.rmtree(check.temp_folder, ignore_errors=True)     # ours: made at the start of this run
    session.config.stash[_REPORT_KEY] = lines
    if lines and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    lines = config.stash.get(_REPORT_KEY, [])
    if lines:
        terminalreporter.section("LEAK CHECK FAILED: the tests did not leave the machine as they found it",
                                 sep="!", red=True, bold=True)
        for line in lines:
            terminalreporter.line(f"  {line}", red=True)
