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
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .harness import GradingFailure, Impl, Steps, resolve_impl

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


def pytest_collection_finish(session):
    results = session.config._ftpkit_results
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
    if report.failed:
        text = explain(item, call)
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
    elif error is not None:
        where = _where(call.excinfo, item.config._ftpkit_impl)
        message = str(error).strip() or "(no message)"
        parts.append("***** Unsuccessful expectation: the test runs to completion\n"
                     f"      expected: no exception\n"
                     f"      actual:   {type(error).__name__}: {message}" + (f"\n      at:       {where}" if where else ""))
        if not isinstance(error, (NotImplementedError, AssertionError)):
            parts.append(str(call.excinfo.getrepr(style="short", chain=False))[-2500:])
    return "\n".join(parts)


def _where(excinfo, impl: Impl) -> str:
    """The last line of the traceback that is in the implementation under test."""
    found = ""
    for entry in excinfo.traceback:
        path = Path(str(entry.path))
        if impl.directory in path.parents:
            found = f"{impl.package}/{path.name}:{entry.lineno + 1}"
    return found


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
    score = maximum = 0.0
    for exercise, row in totals(results).items():
        title = f"{exercise} {EXERCISES[exercise]}"
        write(f"{title:<34} {row['passed']:>6} / {row['tests']:<5} {row['points']:>6g} / {row['max']:<5g}")
        score += row["points"]
        if exercise not in EXTRA_CREDIT:
            maximum += row["max"]
    write(f"{'total':<34} {sum(r.status == 'passed' for r in results):>6} / {len(results):<5} "
          f"{score:>6g} / {maximum:<5g}" + ("  (ex6 is extra credit)" if "ex6" in totals(results) else ""))
    write(f"graded in {time.monotonic() - config._ftpkit_started:.1f} s")
    if config.getoption("--gradescope"):
        write(f"wrote {config.getoption('--gradescope')}")


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
        "tests": [
            {
                "name": r.name,
                "number": r.exercise[2:],
                "score": r.score,
                "max_score": r.points,
                "status": "passed" if r.status == "passed" else "failed",
                "output": r.output if r.status == "passed" else f"[{r.status}] {r.output}",
                "tags": [r.exercise],
                "visibility": "after_published" if r.hidden else "visible",
                "extra_data": {"nodeid": r.nodeid, "outcome": r.status, "duration": round(r.duration, 3)},
            }
            for r in results
        ],
    }
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
