"""The grader's sandbox and its reports, tested directly: where the student's
code runs, what it can reach, what is left after it, and the small things a
failing report must get right."""

from __future__ import annotations

import base64
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.grading import classroom, watch
from tests.grading.harness import REPO_ROOT, GradingFailure, Steps
from tests.grading.peers import Probe
from tests.grading.plugin import student_text
from tests.grading.launcher import Launcher
from tests.grading.remote import CALL_TIMEOUT, StudentError, is_a
from tests.grading.sandbox import FORKSERVER, LIMITS, Sandbox

AS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not AS_ROOT, reason="the student user and the hidden kit exist only as root; "
                                                    "CI runs as root")


@pytest.fixture
def sandbox():
    box = Sandbox("solutions", REPO_ROOT / "solutions")
    try:
        yield box
    finally:
        box.close()
    assert not box.base.exists(), "the sandbox's temporary folder is removed"


@pytest.fixture
def child(sandbox):
    folder = sandbox.folder("child")
    driver = sandbox.driver(folder)
    yield driver
    driver.close()
    sandbox.kill_all()


def test_pure_functions_run_in_the_child_and_come_back_as_values(child):
    protocol = child.module("protocol")
    assert protocol.format_reply(200, "ok") == b"200 ok\r\n"
    command = protocol.parse_command("retr a b")
    assert is_a(command, "Command") and command == protocol.Command("RETR", "a b")
    assert command.verb == "RETR" and str(command) == "Command(verb='RETR', arg='a b')"
    with pytest.raises(ValueError) as caught:
        protocol.parse_host_port("1,2,3")
    assert isinstance(caught.value, StudentError) and caught.value.frames, "the student's frames come along"
    assert caught.value.frames[-1]["file"] == "solutions/protocol.py"


def test_the_child_has_nothing_of_the_grader(child):
    client = child.module("client")          # the client imports os and sys: we look through them
    environment = client.os.environ.copy()
    assert not [name for name in environment if name.startswith("PYTEST")], environment
    assert "PYTHONPATH" not in environment
    sys_path = client.sys.path
    assert str(REPO_ROOT) not in sys_path and "" not in sys_path, sys_path
    assert client.sys.modules.get("tests") is None and client.sys.modules.get("pytest") is None
    # The kit's trace package, from the sandbox's copy: not the standard library's, not the kit's folder.
    trace_file = child.module("helper").trace.__file__
    assert trace_file.startswith(str(child.sandbox.code / "trace")), trace_file


def test_import_solutions_fails_in_a_student_package(tmp_path):
    package = tmp_path / "mylab"
    shutil.copytree(REPO_ROOT / "lab", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "cheat.py").write_text("def reference():\n    import solutions\n    return solutions.__file__\n")
    box = Sandbox("mylab", package)
    try:
        driver = box.driver(box.folder("x"))
        with pytest.raises(StudentError) as caught:
            driver.module("cheat").reference()
        assert caught.value.is_a("ModuleNotFoundError"), caught.value
        driver.close()
    finally:
        box.close()


def test_limits_apply_to_the_child(child):
    limits = Path(f"/proc/{child.process.pid}/limits").read_text()
    assert re.search(r"Max processes\s+256\s+256", limits), limits
    assert re.search(rf"Max file size\s+{LIMITS[resource.RLIMIT_FSIZE]}\s", limits), limits
    assert re.search(r"Max cpu time\s+60\s+60", limits), limits
    session = int(Path(f"/proc/{child.process.pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    assert session == child.process.pid, "the child leads its own session (setsid)"


@needs_root
def test_as_root_the_child_is_the_student_user_and_cannot_reach_the_kit(child, tmp_path):
    os_module = child.module("helper").os
    assert os_module.getuid() == child.sandbox.uid != 0
    for path in ("tests/grading/hidden/test_hidden_edges.py", "solutions/ftpclient.py", "tests/grading/plugin.py"):
        assert not os_module.path.exists(str(REPO_ROOT / path)), f"{path} is visible to the student's code"
    results = tmp_path / "results.json"          # where the grader's results would go
    with pytest.raises(StudentError) as caught:
        os_module.open(str(results), os.O_WRONLY | os.O_CREAT, 0o644)
    assert caught.value.is_a("OSError"), caught.value


@needs_root
def test_as_root_the_child_has_no_privilege_left_and_cannot_touch_the_fork_server(child):
    status = dict(line.split(":", 1) for line in Path(f"/proc/{child.process.pid}/status").read_text().splitlines())
    for capabilities in ("CapPrm", "CapEff", "CapAmb"):
        assert int(status[capabilities], 16) == 0, f"{capabilities}: {status[capabilities].strip()}"
    assert status["NoNewPrivs"].strip() == "1", "a set-uid program could give the student's code privileges"
    assert status["Groups"].strip() == "", "the child kept the grader's groups"
    # The student's process as an exec would leave it: /proc/PID and what is in it are the student's.
    for path in (f"/proc/{child.process.pid}", f"/proc/{child.process.pid}/status"):
        assert Path(path).stat().st_uid == child.sandbox.uid, path
    # The fork server that made it runs as root (the namespace's unshare and shell
    # exec it: it has their pid): the student's code cannot signal it.
    fork_server = child.sandbox.launcher.process.pid
    assert Path(f"/proc/{fork_server}/status").read_text().count("Uid:\t0\t") == 1
    with pytest.raises(StudentError) as caught:
        child.module("helper").os.kill(fork_server, 0)
    assert caught.value.is_a("PermissionError"), caught.value


@needs_root
def test_nothing_of_the_student_survives_a_test(child):
    os_module = child.module("helper").os
    # A process in a session of its own, detached from the child: it would outlive the test.
    os_module.system("setsid sleep 300 >/dev/null 2>&1 < /dev/null &")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("sleep" in _name(pid) for pid in child.sandbox._student_pids()):
        time.sleep(0.05)
    assert any("sleep" in _name(pid) for pid in child.sandbox._student_pids()), "the detached sleep started"
    child.sandbox.kill_all()
    assert child.sandbox._student_pids() == []


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@pytest.fixture
def watched(child):
    """The child, with the grader's watch over its calls as in a graded test."""
    watch.set_current(watch.Watch(child.sandbox.pids, child.sandbox.kill_all))
    yield child
    watch.set_current(None)


def _watch_calls_the_hang(sock) -> tuple[str, float]:
    """Wait in the child's recv as a graded call does, until the watch calls
    the hang: its message, and how long that took."""
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="nothing ran") as caught:
        sock.recv(1)
    return str(caught.value), time.monotonic() - started


def test_a_call_that_waits_for_what_never_comes_fails_in_a_fraction_of_a_second(watched):
    # The grader accepts the child's connection and sends nothing: the child's
    # recv (no timeout of its own) and the grader both wait, each for the other,
    # and no byte is in flight between them.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sock = watched.connect(listener.getsockname())
        peer, _ = listener.accept()
        with peer:
            verdict, waited = _watch_calls_the_hang(sock)
    # Called on the short rule (QUIET), for nothing was in flight; the wall
    # time only shows it was long before the call's own timeout.
    assert "with no byte on its way" in verdict
    assert watch.QUIET <= waited < CALL_TIMEOUT - 3, f"called after {waited:.1f} s"


def test_a_byte_left_unread_makes_the_watch_wait_the_longer_stall(watched):
    # The child waits on one connection while a byte it never reads waits on
    # another: the kernel holds something for it, so the watch is slower to call
    # a deadlock (STALL, not QUIET), and still calls it.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        waiting = watched.connect(listener.getsockname())
        first, _ = listener.accept()
        watched.connect(listener.getsockname())    # the driver keeps it open; nothing reads it
        second, _ = listener.accept()
        with first, second:
            second.sendall(b"!")
            verdict, waited = _watch_calls_the_hang(waiting)
    assert "the kernel held bytes that no one read" in verdict
    assert watch.STALL <= waited < CALL_TIMEOUT - 3, f"called after {waited:.1f} s"


def test_a_call_that_waits_for_a_busy_peer_is_left_to_wait(watched):
    # The peer works for longer than STALL before it answers (a slow machine):
    # its thread runs, so the wait is not hopeless and the call returns.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sock = watched.connect(listener.getsockname())
        peer, _ = listener.accept()

        def work_then_answer():
            deadline = time.monotonic() + 2 * watch.STALL
            while time.monotonic() < deadline:
                sum(range(10_000))
            peer.sendall(b"!")

        worker = threading.Thread(target=work_then_answer)
        worker.start()
        try:
            assert sock.recv(1) == b"!"
        finally:
            worker.join()
            peer.close()


def test_a_call_that_burns_a_core_fails_in_seconds_not_at_its_timeout(watched):
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="s of CPU") as caught:
        watched.module("helper").hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 100_000_000)
    assert not isinstance(caught.value, StudentError)
    assert time.monotonic() - started < CALL_TIMEOUT - 2, "it ran into the call's timeout instead"


def test_a_program_that_hangs_is_stopped_with_the_reason(watched):
    # A program of the submission waits on a connection that never answers: the
    # run ends long before its timeout, and says why.
    sandbox = watched.sandbox
    folder = sandbox.folder("program")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        script = folder / "hang.py"
        script.write_text(f"import socket\nsocket.create_connection(('127.0.0.1', {listener.getsockname()[1]})).recv(1)\n")
        sandbox.give(folder)
        started = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired) as caught:
            sandbox.run([sandbox.executable, "-I", "-u", str(script)], folder, "", timeout=20)
        assert "nothing ran" in caught.value.reason
        assert time.monotonic() - started < 10


def test_the_fork_server_puts_every_file_at_the_number_asked(tmp_path):
    # Thirteen files at 17..29: numbers the fork server itself uses too (its
    # socket, its wake-up pipe, the files it received, the child's ready pipe).
    script = tmp_path / "numbers.py"
    script.write_text("import os\nfor fd in range(17, 30):\n    os.write(fd, str(fd).encode())\n")
    launcher = Launcher(sys.executable, [], -1, -1, {}, FORKSERVER, REPO_ROOT, {"PATH": os.environ["PATH"]}, tmp_path)
    pipes = [os.pipe() for _ in range(13)]
    try:
        with open(os.devnull, "rb") as devnull, open(tmp_path / "out", "wb") as out:
            files = {0: devnull.fileno(), 1: out.fileno(), 2: out.fileno(),
                     **{17 + n: write for n, (_, write) in enumerate(pipes)}}
            child = launcher.start([str(script)], tmp_path, {}, files)
        for _, write in pipes:
            os.close(write)
        assert child.wait(timeout=10) == 0, (tmp_path / "out").read_text()
        assert [os.read(read, 10) for read, _ in pipes] == [str(17 + n).encode() for n in range(13)]
    finally:
        for read, _ in pipes:
            os.close(read)
        launcher.close()


def test_a_child_that_exits_is_reported_not_hung(child):
    with pytest.raises(GradingFailure, match="stays alive"):
        child.module("helper").os._exit(3)


# --- reports --------------------------------------------------------------------

def test_steps_never_print_an_empty_header(tmp_path):
    log = tmp_path / "only-header.log"
    log.write_text('{"type":"header","t":1.0,"seq":0,"pid":1,"format":"ftpkit-trace","schema":1}\n')
    steps = Steps()
    steps.trace("the server under test", log)
    text = steps.render()
    assert "Steps so far" not in text and "none: its trace has no socket events" in text, text


def test_a_closed_connection_points_at_the_output_above(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        probe = Probe(listener.getsockname(), Steps())
        accepted, _ = listener.accept()
        accepted.close()
        with pytest.raises(GradingFailure) as caught:
            probe.reply("the greeting")
        probe.close()
    finally:
        listener.close()
    assert "above" in caught.value.hint and "below" not in caught.value.hint
    # In the report the server's output is printed before the expectation that failed.
    steps = Steps()
    err = tmp_path / "server.err"
    err.write_text("Traceback: boom\n")
    steps.log("the server under test", err)
    assert steps.render().index("boom") >= 0


def test_student_text_is_escaped_and_capped():
    text = student_text("\x1b[31mred\x07" + "x" * 10_000 + "the expectation that failed", cap=100)
    assert "\x1b" not in text and "\\x1b[31mred" in text
    assert len(text) < 200 and "characters cut" in text
    assert text.endswith("the expectation that failed"), "the end of a report (what failed) is kept"


def test_classroom_runner_has_per_test_points():
    document = {"tests": [
        {"name": "a", "score": 2, "max_score": 2, "status": "passed", "tags": ["ex1"], "output": "passed"},
        {"name": "b", "score": 0, "max_score": 3, "status": "failed", "tags": ["ex1"], "output": "why"},
        {"name": "c", "score": 5, "max_score": 5, "status": "passed", "tags": ["ex2"], "output": "passed"},
    ]}
    runner = classroom.runner(document, "ex1")
    assert runner["max_score"] == 5 and [t["score"] for t in runner["tests"]] == [2, 0]
    assert runner["status"] == "fail" and runner["tests"][1]["message"] == "why"
    workflow = (REPO_ROOT / ".github/workflows/classroom.yml").read_text()
    for exercise in ("ex1", "ex2", "ex3", "ex4", "ex5", "ex6"):
        assert f"python -m tests.grading.classroom results.json {exercise}" in workflow
    assert "autograding-command-grader" not in workflow, "no all-or-nothing steps left"


def test_classroom_cli_without_results_gives_zero(tmp_path):
    run = subprocess.run([sys.executable, "-m", "tests.grading.classroom", str(tmp_path / "missing.json"), "ex1"],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=30)
    assert run.returncode == 0 and "no usable results" in run.stderr
    result = json.loads(base64.b64decode(run.stdout.strip().split("=", 1)[1]))
    assert result["tests"] == [] and result["status"] == "fail"


# --- the grader run as a program ---------------------------------------------------

def _grade(*args, cwd=REPO_ROOT, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "pytest_timeout",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"))


def test_table_of_extra_credit_alone(tmp_path):
    """-m ex6 used to print 'total 3 / 3 10 / 0'."""
    (tmp_path / "test_extra.py").write_text(
        "import pytest\n\n@pytest.mark.ex6\n@pytest.mark.points(10)\ndef test_extra():\n    pass\n")
    run = _grade(str(tmp_path / "test_extra.py"), "-m", "ex6", "-p", "tests.grading.plugin")
    total = [line for line in run.stdout.splitlines() if line.startswith("total")]
    assert total and re.search(r"10 / 10\s+\(extra credit only\)", total[0]), run.stdout


EARLY_FRAMER = [
    ('''                if len(self._buffer) > self.max_line + 1:
                    # Too long already: drop it now rather than hold it, and
                    # report it once its end arrives, so replies stay in step.
                    self._discarding += len(self._buffer)
                    del self._buffer[:]
                    self._searched = 0
                return None''',
     '''                if len(self._buffer) > self.max_line + 1:
                    # Reported at once; the rest of the line, up to its LF, is skipped.
                    length = len(self._buffer)
                    self._discarding = -1
                    del self._buffer[:]
                    self._searched = 0
                    return LineTooLong(length)
                return None'''),
    ('''            if self._discarding:
                length, self._discarding = self._discarding + len(line), 0
                return LineTooLong(length)''',
     '''            if self._discarding:
                self._discarding = 0
                continue'''),
]


def test_a_framer_that_reports_an_overlong_line_at_once_passes(tmp_path):
    """The overlong-line rule allows reporting as soon as the buffer exceeds the
    limit, not only when the LF arrives (the test used to throw that report away)."""
    package = tmp_path / "early"
    shutil.copytree(REPO_ROOT / "solutions", package, ignore=shutil.ignore_patterns("__pycache__"))
    protocol = (package / "protocol.py").read_text()
    for old, new in EARLY_FRAMER:
        assert protocol.count(old) == 1, old
        protocol = protocol.replace(old, new)
    (package / "protocol.py").write_text(protocol)
    results = tmp_path / "results.json"
    run = _grade("tests/grading", "--impl", str(package), "-k", "test_framer", "--gradescope", str(results))
    tests = {t["extra_data"]["nodeid"].split("::")[-1]: t["status"] for t in json.loads(results.read_text())["tests"]}
    assert tests.get("test_framer_refuses_overlong_lines") == "passed", run.stdout[-3000:]
    assert tests.get("test_framer_handles_partial_and_pipelined_lines") == "passed", run.stdout[-3000:]



def test_a_failure_report_shows_the_students_control_characters_instead_of_obeying_them(tmp_path):
    # A student's exception message with terminal escapes (clear the screen,
    # retitle the window) reaches the grader's terminal as visible text.
    package = tmp_path / "noisy"
    shutil.copytree(REPO_ROOT / "solutions", package, ignore=shutil.ignore_patterns("__pycache__"))
    protocol = (package / "protocol.py").read_text()
    old = '    """Split a command line into verb and argument (RFC 959 section 5.3).\n'
    assert protocol.count(old) == 1
    (package / "protocol.py").write_text(protocol.replace(
        old, old.replace('"""Split', 'raise ValueError("\\x1b[2J\\x1b]0;owned\\x07")\n    """Split')))
    run = _grade("tests/grading", "--impl", str(package), "-k", "test_parse_command")
    assert "1 failed" in run.stdout, run.stdout[-3000:]
    assert "\x1b" not in run.stdout and "\x07" not in run.stdout
    assert "\\x1b[2J\\x1b]0;owned\\x07" in run.stdout, run.stdout[-3000:]


@needs_root
def test_without_mount_namespaces_permissions_hide_the_kit(monkeypatch):
    """A container that refuses unshare: the kit's folder is closed to other users for
    the grading, and has its mode back afterwards."""
    import tests.grading.sandbox as sandbox_module
    monkeypatch.setattr(sandbox_module, "_mount_namespaces_work", lambda: False)
    before = REPO_ROOT.stat().st_mode
    box = Sandbox("solutions", REPO_ROOT / "solutions")
    try:
        assert not box.namespaces
        driver = box.driver(box.folder("x"))
        os_module = driver.module("helper").os
        assert os_module.getuid() == box.uid
        assert not os_module.access(str(REPO_ROOT / "tests/grading/hidden"), os.R_OK)
        driver.close()
    finally:
        box.close()
    assert REPO_ROOT.stat().st_mode == before
