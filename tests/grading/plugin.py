"""The autograder's pytest plugin (loaded by the repository's conftest.py).

    pytest --impl lab                      # grade the student's lab/
    pytest --impl solutions                # the reference (the default in the kit)
    pytest --impl path/to/some/package     # any folder with the lab's modules
    pytest -m ex3                          # one exercise
    pytest --impl lab --gradescope results.json

Every graded test carries an exercise marker (``ex1`` ... ``ex6``), its
points (``points(n)``) and a timeout, so a hung server fails one test
instead of stalling the run. Skipped, errored and timed-out tests count as 0
of their points; they never drop out of the total. A failing test's report
shows the numbered steps taken so far (from the trace of the code under
test) and then the expectation that failed, expected against actual.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .diagnose import diagnose
from .harness import GradingFailure, Impl, Steps, read_events, resolve_impl
from .regions import is_student_written
from .remote import StudentError
from .sandbox import WEAKER, is_root

EXERCISES = {
    "ex1": "control channel",
    "ex2": "passive data channel",
    "ex3": "get, put and ls",
    "ex4": "integrity and errors",
    "ex5": "concurrency",
    "ex6": "active mode (extra credit)",
}
EXTRA_CREDIT = {"ex6"}
DEFAULT_TIMEOUT = 20.0
GRADING_DIR = Path(__file__).resolve().parent
OUTPUT_CAP = 6000          # characters of a test's output in results.json


@dataclass
class Result:
    nodeid: str
    name: str
    exercise: str
    points: float
    hidden: bool
    status: str = "not run"        # passed, failed, error, skipped, not run
    output: str = ""
    duration: float = 0.0
    phases: list = field(default_factory=list)

    @property
    def score(self) -> float:
        return self.points if self.status == "passed" else 0.0


# --- options and markers ---------------------------------------------------------

def pytest_addoption(parser):
    group = parser.getgroup("ftpkit", "ftpkit autograder")
    group.addoption("--impl", default=None, metavar="lab|solutions|PATH",
                    help="the implementation under test (default: solutions in the kit, lab in a release)")
    group.addoption("--gradescope", default=None, metavar="FILE",
                    help="write Gradescope's results.json to FILE")
    group.addoption("--isolation", default="auto", choices=("auto", "off"),
                    help="auto: as root, student code runs as an unprivileged user with the kit hidden "
                         "(the default); off: as the grader's user, for timing the cost of isolation")


def pytest_configure(config):
    for exercise, title in EXERCISES.items():
        config.addinivalue_line("markers", f"{exercise}: graded tests of exercise {exercise[2:]}, {title}")
    config.addinivalue_line("markers", "points(n): the points a graded test is worth")
    config.addinivalue_line("markers", "hidden: a graded test not shown to students before grades are published")
    try:
        config._ftpkit_impl = resolve_impl(config.getoption("--impl"))
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    config._ftpkit_results = {}
    config._ftpkit_started = time.monotonic()


def in_grading_dir(item) -> bool:
    return GRADING_DIR in Path(str(item.fspath)).resolve().parents


def is_graded(item) -> bool:
    """A test under tests/grading/, or any test marked with an exercise."""
    return in_grading_dir(item) or exercise_of(item) is not None


def exercise_of(item) -> str | None:
    for exercise in EXERCISES:
        if item.get_closest_marker(exercise):
            return exercise
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not is_graded(item):
            continue
        exercise, points = exercise_of(item), item.get_closest_marker("points")
        if exercise is None or points is None:
            raise pytest.UsageError(f"{item.nodeid}: a graded test needs an exercise marker and points")
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))
        # pytest's own failure report (a traceback through the grader's
        # machinery, each frame's source parsed) is thrown away for explain():
        # skip making it, it cost more than half of grading the starter.
        item.repr_failure = _not_shown
        item._repr_failure_py = _not_shown


def _not_shown(excinfo, style=None):
    return f"{excinfo.typename}: {str(excinfo.value)[:500]}"


def pytest_collection_finish(session):
    results = session.config._ftpkit_results
    graded = any(is_graded(item) for item in session.items)
    if graded and (not is_root() or session.config.getoption("--isolation") == "off"):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(WEAKER)
    for item in session.items:
        if not is_graded(item):
            continue
        doc = (getattr(item.function, "__doc__", None) or "").strip().split("\n")[0].rstrip(".")
        name = f"{exercise_of(item)} {item.name}" + (f": {doc}" if doc else "")
        # The points of a parametrised test are shared by its variants, so a
        # test is worth the same whichever peers this installation has.
        variants = 1
        for mark in item.iter_markers("parametrize"):
            variants *= max(1, len(mark.args[1]))
        points = float(item.get_closest_marker("points").args[0]) / variants
        results[item.nodeid] = Result(item.nodeid, name, exercise_of(item), round(points, 3),
                                      item.get_closest_marker("hidden") is not None)


# --- fixtures every graded test can use ----------------------------------------------

@pytest.fixture
def impl(request) -> Impl:
    """The implementation under test (``--impl``)."""
    return request.config._ftpkit_impl


@pytest.fixture
def steps(request) -> Steps:
    """Where the harness records what a failing test's report will show."""
    recorder = Steps()
    request.node._ftpkit_steps = recorder
    return recorder


# --- reports ----------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    result = item.config._ftpkit_results.get(item.nodeid)
    if result is None:
        return
    result.duration += report.duration
    if report.passed and call.when == "call":
        refusal = not_own_code(item)
        if refusal:
            report.outcome = "failed"
            report.longrepr = refusal + "\n" + trace_locations(item)
            result.status, result.output = "failed", report.longrepr
            return
    if report.failed:
        try:
            text = explain(item, call)
        except BaseException as error:     # the test's timeout may strike here too: never an INTERNALERROR
            text = (f"{getattr(report, 'longreprtext', '')[-2000:]}\n(the grader could not explain this "
                    f"failure further: {type(error).__name__}: {str(error)[:200]})")
        # The report quotes the student's traces and output: on the grader's
        # terminal too, their control characters are shown, never obeyed.
        text = student_text(text, cap=1 << 20)
        report.longrepr = text
        result.status = "failed" if call.when == "call" else "error"
        result.output = text
    elif report.skipped:
        result.status = "skipped"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        result.output = f"skipped ({reason}): counts as 0 points"
    elif call.when == "call" and result.status == "not run":
        result.status = "passed"
        result.output = "passed"


def not_own_code(item) -> str:
    """Credit needs the student's own code: a server test in which the
    student's server left no socket events of its own (the kit's helper never
    carried the conversation: a library server, another program did) scores 0."""
    for server in getattr(item, "_ftpkit_servers", []):
        events = read_events(server.trace_path)
        accepted = any(e.get("type") == "accept" and e.get("channel") == "control" for e in events)
        replied = any(e.get("type") == "send" and e.get("channel") == "control" and e.get("len", 0) > 0
                      for e in events)
        if not (accepted and replied):
            return ("***** Unsuccessful expectation: the server under test answers with its own code\n"
                    "      expected: its trace shows the control connection accepted and replies sent through "
                    "the lab's helper\n"
                    f"      actual:   its trace has {len(events)} events and "
                    f"{'no accept' if not accepted else 'no reply sent'} on a control connection: whatever "
                    "answered the grader was not the lab's code\n"
                    "      hint:     credit needs your own server: accept and reply through lab/helper.py "
                    "(a library's FTP server, or another program, earns 0 for the test)")
    return ""


def explain(item, call) -> str:
    """Steps so far, then the expectation that failed: a failure that explains itself."""
    parts = []
    doc = (getattr(item.function, "__doc__", None) or "").strip()
    if doc:
        parts.append(f"Test: {doc.splitlines()[0]}")
    if call.when != "call":
        parts.append(f"(failed while {'setting up' if call.when == 'setup' else 'cleaning up after'} the test)")
    steps = getattr(item, "_ftpkit_steps", None)
    if steps is not None:
        rendered = steps.render()
        if rendered:
            parts.append(rendered)
    error = call.excinfo.value if call.excinfo else None
    timeout = item.get_closest_marker("timeout")
    if isinstance(error, GradingFailure):
        parts.append(error.render())
    elif error is not None and type(error).__name__ == "Failed" and "Timeout" in str(error):
        seconds = timeout.args[0] if timeout and timeout.args else DEFAULT_TIMEOUT
        parts.append(f"***** Unsuccessful expectation: the test finishes within {seconds:g} s\n"
                     f"      expected: every step to complete or fail\n"
                     f"      actual:   still waiting after {seconds:g} s (a hang: a read that never ends, "
                     f"a connection never accepted or never closed)")
    elif isinstance(error, StudentError):
        parts.append(student_exception(error))
    elif error is not None:
        message = str(error).strip() or "(no message)"
        parts.append("***** Unsuccessful expectation: the test runs to completion\n"
                     f"      expected: no exception\n"
                     f"      actual:   {type(error).__name__}: {message[:1000]}")
    test_line = line_in_test(call.excinfo) if call.excinfo else ""
    if test_line:
        parts.append(f"      test:     {test_line}")
    if steps is not None and error is not None:
        parts.extend(diagnose(steps.traces, error, student_processes(item)))
    parts.append(trace_locations(item))
    return "\n".join(part for part in parts if part)


def student_exception(error: StudentError) -> str:
    """An exception from the student's code: where in their code, without the grader's frames."""
    message = str(error).strip() or "(no message)"
    lines = ["***** Unsuccessful expectation: your code runs without an exception",
             "      expected: no exception",
             f"      actual:   {error.remote_type}: {message[:1000]}"]
    context = error.context or {}
    frames = list(error.frames)
    written = [f for f in frames if is_student_written(f)]
    hidden_cause = [f for f in context.get("frames", []) if is_student_written(f)]
    where = (written or hidden_cause or frames)
    if where:
        frame = where[-1]
        lines.append(f"      at:       {frame['file']}:{frame['line']} in {frame['function']}: {frame['code']}")
        if not written and hidden_cause:
            lines.append(f"                (raised while handling {context.get('type')}: "
                         f"{str(context.get('message', ''))[:200]})")
    if len(frames) > 1 or (hidden_cause and not written):
        lines.append("      your code's traceback (innermost last):")
        lines += [f"        {f['file']}:{f['line']} in {f['function']}: {f['code']}" for f in frames[-8:]]
        if hidden_cause and not written:
            lines.append(f"      raised while handling {context.get('type')}, from:")
            lines += [f"        {f['file']}:{f['line']} in {f['function']}: {f['code']}"
                      for f in context.get("frames", [])[-8:]]
    return "\n".join(lines)


def line_in_test(excinfo) -> str:
    """The line of the graded test where it failed (the deepest frame in a test file)."""
    found = ""
    for entry in excinfo.traceback:
        path = Path(str(entry.path))
        if GRADING_DIR in path.parents and path.name.startswith("test_"):
            try:
                code = str(entry.statement).strip().splitlines()[0]
            except Exception:
                code = ""
            found = f"{path.relative_to(GRADING_DIR.parent.parent)}:{entry.lineno + 1}: {code[:160]}"
    return found


def student_processes(item) -> dict[int, str]:
    found = {}
    for server in getattr(item, "_ftpkit_servers", []):
        if getattr(server, "process", None) is not None and server.process.poll() is None:
            found[server.process.pid] = "the server under test"
    child = getattr(item, "_ftpkit_child", None)
    if child is not None and child.process.poll() is None:
        found[child.process.pid] = "the process running your code"
    return found


def trace_locations(item) -> str:
    """Where the traces of this failing run are kept, and the command that opens them."""
    steps = getattr(item, "_ftpkit_steps", None)
    if steps is None or not steps.traces:
        return ""
    keep = kept_traces_dir(item.config) / re.sub(r"[^\w.-]+", "_", item.name)[:80]
    keep.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, path in steps.traces:
        if not Path(path).exists():
            continue
        name = re.sub(r"[^\w.-]+", "-", label).strip("-")[:60] + ".log"
        destination = keep / name
        try:
            with open(path, "rb") as source, open(destination, "wb") as copy:
                # At most 64 MiB (RLIMIT_FSIZE caps what the student's code writes anyway).
                copy.write(source.read(64 << 20))
        except OSError:
            continue
        paths.append((label, destination))
    if not paths:
        return ""
    lines = ["Traces of this run:"]
    lines += [f"  {label}: {path}" for label, path in paths]
    lines.append("Open them with:  python -m trace.view " + " ".join(str(p) for _, p in paths))
    return "\n".join(lines)


def kept_traces_dir(config) -> Path:
    """A folder that outlives the run (pytest's own temporary folder, kept for the last runs)."""
    if getattr(config, "_ftpkit_traces", None) is None:
        factory = getattr(config, "_tmp_path_factory", None)
        if factory is not None:
            config._ftpkit_traces = factory.mktemp("ftpkit-traces", numbered=True)
        else:
            config._ftpkit_traces = Path(tempfile.mkdtemp(prefix="ftpkit-traces-"))
    return config._ftpkit_traces


# --- the table and results.json ------------------------------------------------------------

def totals(results):
    table = {}
    for result in results:
        row = table.setdefault(result.exercise, {"tests": 0, "passed": 0, "points": 0.0, "max": 0.0})
        row["tests"] += 1
        row["passed"] += result.status == "passed"
        row["points"] += result.score
        row["max"] += result.points
    return dict(sorted(table.items()))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = list(getattr(config, "_ftpkit_results", {}).values())
    if not results:
        return
    impl = config._ftpkit_impl
    write = terminalreporter.write_line
    terminalreporter.section(f"ftpkit autograder: {impl.name}")
    write(f"{'exercise':<34} {'tests passed':>14} {'points':>14}")
    table = totals(results)
    score = sum(row["points"] for row in table.values())
    maximum = sum(row["max"] for exercise, row in table.items() if exercise not in EXTRA_CREDIT)
    note = "  (ex6 is extra credit)" if "ex6" in table else ""
    if maximum == 0:
        # Only extra credit was run (-m ex6): its own points are the measure.
        maximum = sum(row["max"] for row in table.values())
        note = "  (extra credit only)"
    for exercise, row in table.items():
        title = f"{exercise} {EXERCISES[exercise]}"
        write(f"{title:<34} {row['passed']:>6} / {row['tests']:<5} {row['points']:>6g} / {row['max']:<5g}")
    write(f"{'total':<34} {sum(r.status == 'passed' for r in results):>6} / {len(results):<5} "
          f"{score:>6g} / {maximum:<5g}" + note)
    write(f"graded in {time.monotonic() - config._ftpkit_started:.1f} s")
    sandbox = getattr(config, "_ftpkit_sandbox", None)
    if sandbox is not None:
        write(f"isolation: student code ran as {sandbox.user} (unprivileged, the kit hidden, limits)"
              if sandbox.isolated else "isolation: weaker: student code ran as the grader's user "
              "(not root, or --isolation off)")
    if config.getoption("--gradescope"):
        write(f"wrote {config.getoption('--gradescope')}")


def student_text(text: str, cap: int = OUTPUT_CAP) -> str:
    """Text that may come from the student's code, made safe for results.json:
    control characters (terminal escapes) shown as \\xNN, and its length capped."""
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", lambda m: f"\\x{ord(m.group()):02x}", str(text))
    if len(text) > cap:
        # Keep the head (the test) and the tail (the expectation that failed, the
        # diagnosis, where the traces are); cut the steps in between.
        head = cap // 5
        text = text[:head] + f"\n... ({len(text) - cap} characters cut) ...\n" + text[len(text) - (cap - head):]
    return text


def gradescope_test(r: Result) -> dict:
    if r.hidden:
        # A hidden test shows its name, its points and pass or fail, nothing of what happened.
        return {"name": r.name, "number": r.exercise[2:], "score": r.score, "max_score": r.points,
                "status": "passed" if r.status == "passed" else "failed",
                "output": "hidden test: " + ("passed" if r.status == "passed" else "failed"),
                "tags": [r.exercise], "visibility": "after_published",
                "extra_data": {"nodeid": r.nodeid, "outcome": r.status}}
    return {
        "name": r.name,
        "number": r.exercise[2:],
        "score": r.score,
        "max_score": r.points,
        "status": "passed" if r.status == "passed" else "failed",
        "output": student_text(r.output if r.status == "passed" else f"[{r.status}] {r.output}"),
        "output_format": "text",
        "tags": [r.exercise],
        "visibility": "visible",
        "extra_data": {"nodeid": r.nodeid, "outcome": r.status, "duration": round(r.duration, 3)},
    }


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    path = config.getoption("--gradescope", None)
    results = list(getattr(config, "_ftpkit_results", {}).values())
    if not path:
        return
    for result in results:
        if result.status == "not run":
            result.output = "did not run (the run stopped early): counts as 0 points"
    table = totals(results)
    summary = "\n".join(f"{ex} {EXERCISES[ex]}: {row['passed']}/{row['tests']} tests, "
                        f"{row['points']:g}/{row['max']:g} points" for ex, row in table.items())
    document = {
        "score": round(sum(r.score for r in results), 3),
        "execution_time": round(time.monotonic() - config._ftpkit_started, 2),
        "output": f"Implementation under test: {config._ftpkit_impl.name}\n{summary}",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [gradescope_test(r) for r in results],
    }
    write_atomically(Path(path), json.dumps(document, indent=2) + "\n")


def write_atomically(path: Path, text: str) -> None:
    """Write a new file and rename it over ``path``: whatever was at ``path``
    before (a file a submission made, a link) is replaced, never written through."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
