"""When waiting longer cannot help: the grader's watch over a wait for the student's code.

A test that waits for the student's code (a reply, the end of a data
stream, a call into the client, the client program's exit) waits up to a
timeout, so that a slow machine never fails correct code. A hung
submission then costs the whole timeout, for every wait of every test,
and a class of hung submissions is graded at a crawl. Two kinds of hang
are plain long before the timeout, from the kernel's record of each
thread (/proc/PID/task/TID):

* **Spinning**: the student's processes burn a core while the grader
  waits (a loop that never blocks; most often, ``recv`` returned ``b''``
  and the loop went on).
* **Everyone asleep**: every thread of the student's processes, of the
  grader's peers (the reference server) and of the grader itself (but the
  one waiting) is asleep, and none has woken up for ``STALL`` seconds.
  Whatever each side waits for, the other side is not going to send:
  a reply parser waits for more of a reply that arrived whole, a server
  waits for a command it has already read. Only a timer could still
  wake someone, and no graded test waits for the student's own timer.

A correct submission never looks like either: while it has work, one of
its threads is running or ready to run (state R), however loaded the
machine; a thread that is woken, even to sleep again, counts as a switch.
A ``STALL`` above a second also covers the kernel's own timers on
loopback (a delayed ACK, 40 ms; a handshake's segment dropped by a full
accept queue, sent again after 1 s). Those timers only run while TCP has
something to deliver, so when the kernel's socket tables (/proc/net/tcp)
show no byte queued on any connection of theirs and no handshake under
way, everyone asleep for ``QUIET`` seconds is already a deadlock.

    wait = watch.current().wait()
    ...
    reason = wait.hopeless()       # None, or why waiting longer cannot help
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

STALL = 1.2                     # seconds with every thread asleep and none woken: a deadlock
QUIET = 0.3                     # the same, with no byte in flight and no handshake under way
SPIN_CPU, SPIN_SHARE = 0.6, 0.4  # 0.6 s of CPU, 40% of the time waited: a loop that never waits
CHECK = 0.1                     # how often a wait looks (seconds)

ASLEEP = frozenset("SZX")       # asleep on an event, or dead; R running, D in the disk, T stopped


def _threads(pid: int) -> dict[tuple[int, int], tuple[str, int]]:
    """(pid, tid) -> (state, context switches so far) of each thread of ``pid``."""
    found = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
            found[(pid, int(tid))] = (fields["State"].split()[0],
                                      int(fields["voluntary_ctxt_switches"]) +
                                      int(fields["nonvoluntary_ctxt_switches"]))
        except (OSError, KeyError, ValueError, IndexError):
            continue                    # the thread ended while we looked
    return found


# /proc/net/tcp's states: a handshake under way (its segments are sent again by timers).
SYN_SENT, SYN_RECV, LISTEN = "02", "03", "0A"


def _socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets ``pid`` holds open."""
    found = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def nothing_in_flight(pids) -> bool:
    """No byte queued to send or to read on any TCP socket of ``pids``, and no
    handshake under way with any of them: nothing the kernel will deliver later."""
    inodes = set().union(*(_socket_inodes(pid) for pid in pids))
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                rows += [line.split() for line in lines]
        except (OSError, StopIteration):
            continue
    ours = [row for row in rows if len(row) > 9 and row[9] in inodes]
    listening = {row[1].rsplit(":", 1)[1] for row in ours if row[3] == LISTEN}
    for row in rows:
        if len(row) <= 9:
            continue
        state, queues = row[3], row[4]
        # A half-open connection to one of our listeners has no inode yet: its port says it.
        if state == SYN_RECV and row[1].rsplit(":", 1)[1] in listening:
            return False
        if row[9] in inodes and (state == SYN_SENT or (state != LISTEN and queues != "00000000:00000000")):
            return False
    return True


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its live threads, from /proc; 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Watch:
    """The processes of one test: the student's (found afresh at each look:
    they fork) and the grader's peers (the reference server)."""

    def __init__(self, student_pids: Callable[[], list[int]], stop_students: Callable[[], None]):
        self.student_pids = student_pids
        self.stop_students = stop_students       # ends every process of the submission
        self.peers: set[int] = set()

    def add_peer(self, pid: int) -> None:
        self.peers.add(pid)

    def wait(self, spin: bool = True, quiet_grader_threads: tuple[int, ...] = ()) -> "Wait":
        """A wait that starts now. ``spin=False`` for code that is busy on
        purpose; ``quiet_grader_threads``: the grader's threads (native ids)
        that watch rather than act, besides the one calling."""
        return Wait(self, spin, {threading.get_native_id(), *quiet_grader_threads})


class _NoWatch(Watch):
    """Outside a test of student code: every wait runs to its timeout."""

    def __init__(self):
        super().__init__(lambda: [], lambda: None)

    def wait(self, spin: bool = True, quiet_grader_threads: tuple[int, ...] = ()) -> "Wait":
        return Wait(self, False, set(), enabled=False)


_current: Watch = _NoWatch()


def current() -> Watch:
    """The watch of the test running now (set by the student_area fixture)."""
    return _current


def set_current(watch: Watch | None) -> None:
    global _current
    _current = watch if watch is not None else _NoWatch()


class Wait:
    def __init__(self, watch: Watch, spin: bool, waiters: set[int], enabled: bool = True):
        self.watch = watch
        self.spin = spin
        self.waiters = waiters           # the grader's threads that only wait or watch
        self.enabled = enabled
        # Most waits end within milliseconds: the first look, which takes the
        # CPU times to compare with, is made only once CHECK has passed.
        self.started = self.last_look = time.monotonic()
        self.cpu_before: dict[int, float] | None = None
        self.asleep: dict | None = None           # every thread, as it was when all fell asleep
        self.asleep_since = 0.0

    def hopeless(self) -> str | None:
        """Why waiting longer cannot help, or None. Cheap to call often: it
        looks at most every CHECK seconds."""
        now = time.monotonic()
        if not self.enabled or now - self.last_look < CHECK:
            return None
        self.last_look = now
        students = self.watch.student_pids()
        if not students:
            return None                   # nothing of the student's runs: the wait ends by itself
        if self.cpu_before is None:
            self.cpu_before, self.started = {pid: cpu_seconds(pid) for pid in students}, now
        waited = now - self.started
        if self.spin:
            spent = sum(max(0.0, cpu_seconds(pid) - self.cpu_before.get(pid, 0.0)) for pid in students)
            if spent >= SPIN_CPU and spent >= SPIN_SHARE * waited:
                return (f"it used {spent:.1f} s of CPU in the {waited:.1f} s the grader waited, "
                        "a loop that never waits for the network")
        threads = self._threads(students)
        if not all(state in ASLEEP for state, _ in threads.values()):
            self.asleep = None
            return None
        if threads != self.asleep:            # fell asleep since the last look, or woke up in between
            self.asleep, self.asleep_since = threads, now
            return None
        quiet = now - self.asleep_since
        if quiet < QUIET:
            return None
        if nothing_in_flight({*students, *self.watch.peers, os.getpid()}):
            why = "with no byte on its way between them"
        elif quiet >= STALL:
            why = "though the kernel held bytes that no one read"
        else:
            return None
        return (f"for {quiet:.1f} s nothing ran: every thread of your code and of the grader's side "
                f"was asleep, each waiting for the other, {why} (what your code waits for has already "
                "arrived, or will never be sent)")

    def _threads(self, students: list[int]) -> dict:
        threads: dict = {}
        for pid in {*students, *self.watch.peers}:
            threads.update(_threads(pid))
        grader = os.getpid()
        threads.update((key, value) for key, value in _threads(grader).items() if key[1] not in self.waiters)
        return threads


class Guard:
    """A watch over a blocking call the grader cannot slice (a library's
    ``recv``): a thread looks, and when waiting is hopeless it ends the
    student's processes (so the call returns at once: the test has failed)
    and keeps the reason.

        with watch.guard() as guard:
            ftp.retrbinary(...)
        guard.reason       # None, or why the student's processes were ended
    """

    def __init__(self, watch: Watch):
        self.watch = watch
        self.reason: str | None = None
        self._done = threading.Event()
        self._ready = threading.Event()

    def __enter__(self) -> "Guard":
        if isinstance(self.watch, _NoWatch):
            return self
        self._thread = threading.Thread(target=self._look, name="ftpkit-watch", daemon=True)
        self._thread.start()
        self._ready.wait()
        return self

    def _look(self) -> None:
        # The calling thread runs the grader's client (ftplib): it is a peer, looked
        # at like the others; only this watching thread is left out.
        wait = Wait(self.watch, True, {threading.get_native_id()})
        self._ready.set()
        while not self._done.wait(CHECK):
            reason = wait.hopeless()
            if reason:
                self.reason = reason
                self.watch.stop_students()
                return

    def __exit__(self, *exc) -> None:
        self._done.set()
        if hasattr(self, "_thread"):
            self._thread.join()


def guard() -> Guard:
    """A Guard over the test running now."""
    return Guard(current())
