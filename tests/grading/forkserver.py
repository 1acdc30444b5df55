"""The fork server: starts every process of a submission, fast.

A grading starts about fifty processes of the submission (a server or a
driver for nearly every test), and a fresh Python spends most of its 130 ms
of CPU importing the same standard library. This script imports it once, in
the sandbox's mount namespace, and then forks a child for each process the
grader asks for: the child drops to the student user, takes its limits, its
folder, its environment and its files, and runs the script as ``python -I
-u SCRIPT ARGS`` would. A fork costs a few milliseconds.

    python -I -u -B forkserver.py SOCKET_FD UID GID LIMITS_JSON PRELOAD_DIR [MODULE...]

It runs as the grader's user (root when isolating), never as the student,
so a submission can neither signal it nor write its memory; it runs no
student code itself, and every child closes the fork server's socket before
it does. The grader speaks to it over a SOCK_SEQPACKET socket, one JSON
message each way, the files travelling as SCM_RIGHTS:

    -> {"argv": [SCRIPT or "-m" MODULE, ARG...], "cwd": DIR, "env": {...}, "fds": [0, 1, 2, ...],
        "path": [DIR...] (optional: put first on sys.path)}  + the files
    <- {"pid": PID}                   or  {"error": TEXT}
    <- {"exited": PID, "returncode": N}    whenever a child ends (-N: killed by signal N)

UID -1 keeps the user (the grader is not root: isolation is weaker anyway).
When the grader closes the socket, the fork server ends.

Only the standard library, the kit's ``trace`` (in PRELOAD_DIR) and the
MODULEs named are imported here, never the submission. The grader runs a
second fork server, for the reference server (MODULE solutions.server), as
itself and outside any sandbox.
"""

import json
import os
import select
import signal
import socket
import sys

# What the submission's server, its client and the driver import anyway: loaded
# once here, shared by every child (copy on write).
PRELOAD = ["argparse", "atexit", "base64", "cmd", "collections", "ctypes", "dataclasses", "datetime", "enum",
           "errno", "functools", "hashlib", "inspect", "io", "ipaddress", "itertools", "json", "logging",
           "pathlib", "queue", "random", "re", "runpy", "selectors", "shlex", "shutil", "socket",
           "socketserver", "stat", "string", "struct", "tempfile", "textwrap", "threading", "time",
           "traceback", "typing", "urllib.parse", "uuid", "trace"]
MAX_FDS = 16
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    uid, gid = int(sys.argv[2]), int(sys.argv[3])
    limits = {int(k): v for k, v in json.loads(sys.argv[4]).items()}
    preload(sys.argv[5], sys.argv[6:])
    # A child's end wakes the loop below through this pipe.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        ready, _, _ = select.select([control, wake_read], [], [])
        if wake_read in ready:
            os.read(wake_read, 4096)
            report_ended_children(control)
        if control in ready:
            try:
                message, fds, _, _ = socket.recv_fds(control, 1 << 16, MAX_FDS)
            except OSError:
                break
            if not message:
                break               # the grader is done
            try:
                request = json.loads(message)
                pid = fork_child(request, fds, control, uid, gid, limits)
                answer = {"pid": pid}
            except Exception as error:          # a bad request: the grader's bug, said to the grader
                answer = {"error": f"{type(error).__name__}: {error}"}
            finally:
                for fd in fds:
                    os.close(fd)
            control.send(json.dumps(answer).encode())
    for pid in list_children():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def preload(directory: str, more: list[str]) -> None:
    sys.path.insert(0, directory)
    for name in PRELOAD + more:
        try:
            __import__(name)
        except ImportError:
            pass
    sys.path.remove(directory)


def report_ended_children(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        control.send(json.dumps({"exited": pid, "returncode": os.waitstatus_to_exitcode(status)}).encode())


def list_children() -> list[int]:
    try:
        with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as children:
            return [int(pid) for pid in children.read().split()]
    except OSError:
        return []


def fork_child(request: dict, fds: list[int], control, uid: int, gid: int, limits: dict) -> int:
    argv, targets = list(request["argv"]), list(request["fds"])
    if len(targets) != len(fds):
        raise ValueError(f"{len(fds)} files for {len(targets)} descriptors")
    # The child says over this pipe that it is ready (its user, limits and files
    # taken) or why it could not be, so that a started process is a set-up one.
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_write)
        with open(ready_read, "rb") as ready:
            said = ready.read()
        if said != b"ready":
            raise RuntimeError(said.decode("utf-8", "replace") or "the child died while being set up")
        return pid
    # The child. Nothing of the fork server may survive into student code.
    try:
        # Above every descriptor the child is to have, so putting the grader's
        # files in place (become) cannot land on it.
        ready_write = _above(ready_write, targets)
        os.close(ready_read)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        control.detach()                # its descriptor is closed below, with the wake-up pipe
        become(fds, targets)
        close_all_but(set(targets) | {ready_write})
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[0:0] = request.get("path", [])
        apply_limits(limits)
        drop_privileges(uid, gid)
        os.write(ready_write, b"ready")
        os.close(ready_write)
    except BaseException as error:
        try:
            os.write(ready_write, f"{type(error).__name__}: {error}".encode())
        finally:
            os._exit(1)                 # never back into the fork server's loop
    code = 1
    try:
        code = run(argv)
    finally:
        os._exit(code)


def _above(fd: int, targets: list[int]) -> int:
    import fcntl
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, max(targets, default=2) + 1)
    os.close(fd)
    return moved


def become(fds: list[int], targets: list[int]) -> None:
    """Put the files the grader sent at the descriptor numbers the child expects."""
    import fcntl
    floor = max(targets, default=2) + 1
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, floor) for fd in fds]     # out of the way of every target
    for fd, target in zip(high, targets):
        os.dup2(fd, target, inheritable=target <= 2)
    for fd in high:
        os.close(fd)


def close_all_but(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def apply_limits(limits: dict) -> None:
    import resource
    for limit, value in limits.items():
        soft, hard = resource.getrlimit(limit)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):
            pass


def drop_privileges(uid: int, gid: int) -> None:
    """As root: become the student user for good, with no way back up (no
    capabilities left, and no set-uid program can give any)."""
    if uid < 0:
        return
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)          # from root to a user: every capability goes
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError("the student user was not taken")
    # A change of user leaves a process "not dumpable" (the files under /proc/PID
    # root's, no core dump) until it execs, and this child never does: make it
    # what the same program started with an exec would be.
    if libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")


def run(argv: list[str]) -> int:
    """Run ``[SCRIPT, ARG...]`` or ``["-m", MODULE, ARG...]`` as `python -I -u` would,
    and return its exit status."""
    import atexit
    import runpy
    import threading
    code = 0
    try:
        if argv[0] == "-m":             # python -m MODULE ARGS
            sys.argv = argv[1:]
            # Preloaded as a module, run again as __main__ (what it imports stays loaded).
            sys.modules.pop(argv[1], None)
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exit:
        code = exit_status(exit.code)
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    # What the interpreter does at its end: wait for the threads, run atexit.
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    return code


def exit_status(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    main()
