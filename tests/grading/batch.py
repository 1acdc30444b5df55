"""Grade a whole class in one command.

    python -m tests.grading.batch SUBMISSIONS/ --out gradebook.csv --reports reports/
    python -m tests.grading.batch SUBMISSIONS/ --jobs 2 --timeout 300 -m "ex1 or ex2"
    python -m tests.grading.batch --one SUBMISSION --results results.json    # one (Gradescope)

``SUBMISSIONS/`` holds one folder (or git clone) per student, named after the
student, as a GitHub Classroom or Gradescope export gives them. A
submission's lab package is its ``lab/`` folder, or the folder itself when
the modules are at its top level (``server.py`` there), or either of those
one folder down (an archive that unpacks into a folder of its own).

Each submission is graded by the autograder's own command line, in a process
of its own (``pytest tests/grading --impl PATH --gradescope results.json``),
which runs the student's code isolated as the grader does; this module never
imports or runs student code itself. Several are graded at a time
(``--jobs``, default: twice the number of cores: a grading spends much
of its time waiting, on sockets and on the timeouts that catch a hang),
each within ``--timeout``
seconds, with a progress bar.

The gradebook CSV has a row per student: points per exercise, the total and
a status: ``graded``, or why the submission got 0 (not a lab package, does
not import, timed out, the grader crashed). The batch always goes on. For
each student ``--reports`` gets an HTML report: the points, each failing
test's steps and expectation, and the session diagram of its traces
(``python -m trace.view LOG --export``).
"""

from __future__ import annotations

import argparse
import csv
import functools
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
EXERCISES = ["ex1", "ex2", "ex3", "ex4", "ex5", "ex6"]
DEFAULT_JOBS = 2 * (os.cpu_count() or 1)
DEFAULT_TIMEOUT = 600.0          # seconds for one submission (each test has its own limit too)
OUTPUT_LIMIT = 4000              # characters of a failing test's output kept in a report
DIAGRAMS_PER_REPORT = 12         # session diagrams drawn per student (the first failing tests)


@dataclass
class Grade:
    student: str
    status: str = "graded"                      # graded, or the reason for 0
    points: dict = field(default_factory=dict)  # exercise -> points
    maximum: dict = field(default_factory=dict)
    results: dict | None = None                 # the grader's results.json
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return round(sum(self.points.values()), 3)


# --- finding the lab in a submission ----------------------------------------------------

def find_package(submission: Path) -> Path:
    """The folder holding the submission's lab modules; ValueError says why not."""
    if not submission.is_dir():
        raise ValueError("not a folder")
    candidates = [submission / "lab", submission]
    candidates += [sub / name for sub in sorted(submission.iterdir())
                   if sub.is_dir() and not sub.name.startswith(".") for name in ("lab", "")]
    for candidate in candidates:
        server = candidate / "server.py"
        if server.is_file() and not server.is_symlink():
            return candidate
    raise ValueError("not a lab package: no lab/server.py (nor server.py at the top) in the submission")


def syntax_problem(package: Path) -> str | None:
    """A module that cannot be compiled, found without running anything."""
    for path in sorted(package.glob("*.py")):
        try:
            compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        except SyntaxError as err:
            return f"does not import: SyntaxError in {path.name} line {err.lineno}: {err.msg}"
        except ValueError as err:                 # NUL bytes and the like
            return f"does not import: {path.name}: {err}"
    return None


def stage(package: Path, workdir: Path) -> Path:
    """A private copy of the package, as ``lab``, for the grader to import."""
    target = workdir / "lab"
    shutil.copytree(package, target, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git"))
    return target


# --- grading one submission -------------------------------------------------------------------

def grader_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH"))}


# A grading makes and removes some 400 folders and 1,400 files (a folder of its
# own for every test, the files it serves, traces, outputs); on a disk
# filesystem their bookkeeping costs about a tenth of the grading's CPU, in
# memory nothing. A grading keeps about 1 MiB at a time there.
MEMORY_FILESYSTEM = "/dev/shm"
MEMORY_NEEDED = 256 << 20


@functools.cache        # decided once: the folders made in it are opened up to it (below)
def scratch_root() -> str:
    """Where gradings keep their temporary files: the folder TMPDIR names when it
    is set; else a memory filesystem with room to spare; else the system's
    temporary folder."""
    if not os.environ.get("TMPDIR"):
        try:
            room = os.statvfs(MEMORY_FILESYSTEM)
            if room.f_bavail * room.f_frsize >= MEMORY_NEEDED and os.access(MEMORY_FILESYSTEM, os.W_OK | os.X_OK):
                return MEMORY_FILESYSTEM
        except OSError:
            pass
    return tempfile.gettempdir()


def _let_the_student_user_through(folder: Path) -> None:
    """Make this grading's folders, up to the temporary folder they live in,
    traversable (not listable) by others: the grader puts the sandbox of the
    unprivileged student user in here, and removes it with the folder even
    when a hang is killed before the grader could clean up."""
    top = Path(scratch_root()).resolve()
    for place in (folder.resolve(), *folder.resolve().parents):
        if place == top or place == place.parent:
            break
        mode = place.stat().st_mode
        os.chmod(place, mode | 0o011)


def run_grader(package: Path, results: Path, basetemp: Path, timeout: float,
               marker: str | None = None, isolation: str | None = None) -> tuple[str, dict | None]:
    """The autograder's CLI on ``package``; (status, results.json or None)."""
    # Of the installed pytest plugins only the one the grader needs: the others
    # (notebooks, benchmarks...) take a second or more to import and grade nothing.
    # pytest's unraisable-exception check collects garbage five times at the end
    # of a run (0.14 s of CPU a grading) to report warnings no grade depends on.
    command = [sys.executable, "-m", "pytest", "tests/grading", "--impl", str(package),
               "--gradescope", str(results), "-q", "-p", "no:cacheprovider", "-p", "pytest_timeout",
               "-p", "no:unraisableexception", "--basetemp", str(basetemp)]
    if marker:
        command += ["-m", marker]
    if isolation:                         # the grader's own option (auto: isolated as root)
        command += ["--isolation", isolation]
    # The grading's temporary files go in a folder of this submission's own,
    # removed with it, even when a hang has to be killed before it cleans up.
    scratch = basetemp.parent / "tmpdir"
    scratch.mkdir(exist_ok=True)
    _let_the_student_user_through(scratch)
    env = dict(grader_env(), TMPDIR=str(scratch), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        return f"timed out: grading took more than {timeout:g} s (a hang?)", None
    finally:
        _kill_group(process)             # whatever it started and left behind
    document = None
    if results.is_file():
        try:
            document = json.loads(results.read_text(encoding="utf-8"))
        except ValueError:
            document = None
    if document is None or process.returncode not in (0, 1):
        last = [line for line in output.decode(errors="replace").splitlines() if line.strip()][-1:] or ["?"]
        return f"crashed: the grader exited with status {process.returncode}: {last[0][:200]}", None
    return "graded", document


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait()


def import_problem(document: dict) -> str | None:
    """'does not import' when nothing passed and most tests failed on one
    import error (hidden tests show no output, so not all of them name it)."""
    tests = document.get("tests", [])
    if not tests or any(t.get("status") == "passed" for t in tests):
        return None
    found = [re.search(r"(ModuleNotFoundError|ImportError|SyntaxError)[^\n]*", t.get("output", "")) for t in tests]
    named = [m.group(0) for m in found if m]
    if named and len(named) * 2 >= len(tests):
        return f"does not import: {max(set(named), key=named.count)[:200]}"
    return None


def grade_submission(student: str, submission: Path, workdir: Path, timeout: float = DEFAULT_TIMEOUT,
                     marker: str | None = None, isolation: str | None = None) -> Grade:
    grade = Grade(student)
    started = time.monotonic()
    try:
        package = find_package(submission)
        problem = syntax_problem(package)
        if problem:
            grade.status = problem
            return grade
        staged = stage(package, workdir)
        status, document = run_grader(staged, workdir / "results.json", workdir / "tmp", timeout, marker,
                                      isolation)
        grade.status, grade.results = status, document
        if document is not None:
            for test in document.get("tests", []):
                exercise = (test.get("tags") or ["?"])[0]
                grade.points[exercise] = grade.points.get(exercise, 0.0) + float(test.get("score", 0))
                grade.maximum[exercise] = grade.maximum.get(exercise, 0.0) + float(test.get("max_score", 0))
            grade.status = import_problem(document) or status
    except ValueError as err:
        grade.status = str(err)
    except OSError as err:
        grade.status = f"could not be read: {err}"
    finally:
        grade.seconds = time.monotonic() - started
    if grade.status != "graded":
        grade.points = {exercise: 0.0 for exercise in grade.points}
    return grade


# --- reports -----------------------------------------------------------------------------------

def _tmp_dir_name(test_name: str) -> str:
    """pytest's folder name for a test's tmp_path (its name, cut to 30 characters)."""
    return re.sub(r"[\W]", "_", test_name)[:30]


def traces_of(test: dict, basetemp: Path) -> list[Path]:
    """The trace logs of one test's run: the paths its report names (the
    grader prints them), else the logs in pytest's folder for the test; only
    files inside this grading's ``basetemp``, whatever the output says."""
    if not basetemp.is_dir():
        return []
    base = basetemp.resolve()
    named = re.findall(r"(/[^\s'\"]+\.log)\b", str(test.get("output", "")))
    logs = []
    for text in dict.fromkeys(named):
        path = Path(text)
        if path.is_file() and not path.is_symlink() and base in path.resolve().parents:
            logs.append(path)
    if logs:
        return logs
    name = test.get("extra_data", {}).get("nodeid", "").rsplit("::", 1)[-1]
    if not name:
        return []
    prefix = _tmp_dir_name(name)
    for folder in basetemp.iterdir():
        if folder.is_dir() and folder.name.startswith(prefix) and folder.name[len(prefix):].isdigit():
            logs += sorted(p for p in folder.rglob("*.log") if p.is_file() and not p.is_symlink())
    return logs


def diagram(logs: list[Path], target: Path) -> bool:
    """The viewer's HTML export of these traces (merged); False if it could not."""
    try:
        done = subprocess.run([sys.executable, "-m", "trace.view", *map(str, logs), "--export", str(target),
                               "--no-color", "--width", "120"], cwd=REPO_ROOT, env=grader_env(),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and target.is_file()


def write_report(grade: Grade, reports: Path, basetemp: Path | None) -> Path:
    slug = re.sub(r"[^\w.-]", "_", grade.student)
    page = reports / f"{slug}.html"
    assets = reports / slug
    out = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(grade.student)}: ftpkit lab</title>",
           "<style>body{font-family:sans-serif;max-width:70em;margin:auto}pre{background:#f6f6f6;"
           "padding:.5em;overflow-x:auto}iframe{width:100%;height:30em;border:1px solid #ccc}"
           "td,th{padding:.2em .8em;text-align:right}</style>",
           f"<h1>{html.escape(grade.student)}</h1>",
           f"<p>Status: <b>{html.escape(grade.status)}</b>. Total: <b>{grade.total:g}</b> points.</p>",
           "<table><tr><th>exercise</th><th>points</th><th>of</th></tr>"]
    for exercise in EXERCISES:
        if exercise in grade.maximum:
            out.append(f"<tr><td>{exercise}</td><td>{grade.points.get(exercise, 0):g}</td>"
                       f"<td>{grade.maximum[exercise]:g}</td></tr>")
    out.append("</table>")
    failing = [t for t in (grade.results or {}).get("tests", []) if t.get("status") != "passed"]
    if failing:
        out.append(f"<h2>Failing tests ({len(failing)})</h2>")
    for number, test in enumerate(failing, 1):
        out.append(f"<h3>{html.escape(test.get('name', '?'))} ({test.get('max_score', 0):g} points)</h3>")
        out.append(f"<pre>{html.escape(str(test.get('output', ''))[:OUTPUT_LIMIT])}</pre>")
        logs = traces_of(test, basetemp) if basetemp else []
        if logs and number <= DIAGRAMS_PER_REPORT:
            assets.mkdir(parents=True, exist_ok=True)
            target = assets / f"test-{number}.html"
            if diagram(logs, target):
                out.append(f"<p>The session, from its traces ({', '.join(html.escape(p.name) for p in logs)}):</p>"
                           f"<iframe src='{html.escape(slug)}/{target.name}'></iframe>")
    page.write_text("\n".join(out) + "\n", encoding="utf-8")
    return page


def write_gradebook(grades: list[Grade], path: Path) -> None:
    exercises = [e for e in EXERCISES if any(e in g.maximum for g in grades)] or EXERCISES
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *exercises, "total", "status"])
        for grade in sorted(grades, key=lambda g: g.student):
            writer.writerow([grade.student, *(f"{grade.points.get(e, 0.0):g}" for e in exercises),
                             f"{grade.total:g}", grade.status])


# --- a class ----------------------------------------------------------------------------------

def submissions_in(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def grade_class(folder: Path, out: Path, reports: Path | None, jobs: int, timeout: float,
                marker: str | None = None, progress: bool = True, isolation: str | None = None) -> list[Grade]:
    students = submissions_in(folder)
    grades: list[Grade] = []
    if reports:
        reports.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ftpkit-batch-", dir=scratch_root()) as scratch:
        def one(student: str, submission: Path) -> Grade:
            workdir = Path(scratch, re.sub(r"[^\w.-]", "_", student))
            workdir.mkdir()
            grade = grade_submission(student, submission, workdir, timeout, marker, isolation)
            if reports:
                write_report(grade, reports, workdir / "tmp")
            shutil.rmtree(workdir, ignore_errors=True)
            return grade

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        with Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.description}"), disable=not progress, transient=False) as bar:
            task = bar.add_task("", total=len(students))
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                futures = {pool.submit(one, s, p): s for s, p in students.items()}
                for future in as_completed(futures):
                    grade = future.result()
                    grades.append(grade)
                    bar.update(task, advance=1, description=f"{grade.student}: {grade.total:g} ({grade.status[:40]})")
    write_gradebook(grades, out)
    return grades


def grade_one(submission: Path, results: Path, timeout: float, marker: str | None = None) -> Grade:
    """One submission into one results.json (Gradescope's run_autograder).
    A submission that cannot be graded still gets a results.json: 0, and why."""
    results.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ftpkit-grade-", dir=scratch_root()) as scratch:
        grade = grade_submission(submission.name, submission, Path(scratch), timeout, marker)
    if grade.results is not None and grade.status == "graded":
        document = grade.results
    else:
        document = {"score": 0, "output": f"Not graded: {grade.status}. Score: 0.",
                    "visibility": "visible", "stdout_visibility": "hidden", "tests": []}
        if grade.results:
            document["tests"] = [dict(t, score=0, status="failed") for t in grade.results.get("tests", [])]
    results.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return grade


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.grading.batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", nargs="?", type=Path, help="a folder with one folder per student")
    parser.add_argument("--out", type=Path, default=Path("gradebook.csv"), help="the gradebook CSV to write")
    parser.add_argument("--reports", type=Path, help="write an HTML report per student into this folder")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="gradings at a time (default: 2 x cores)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds for one submission")
    parser.add_argument("-m", dest="marker", help="grade only these exercises, e.g. 'ex1 or ex2'")
    parser.add_argument("--one", type=Path, metavar="SUBMISSION", help="grade one submission (with --results)")
    parser.add_argument("--results", type=Path, help="with --one: the results.json to write")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--isolation", choices=("auto", "off"),
                        help="passed to the grader: off grades without the sandbox (for timing it only)")
    args = parser.parse_args(argv)
    if args.one:
        if not args.results:
            parser.error("--one needs --results FILE")
        grade = grade_one(args.one, args.results, args.timeout, args.marker)
        print(f"{grade.student}: {grade.total:g} points ({grade.status}); wrote {args.results}")
        return 0
    if args.submissions is None or not args.submissions.is_dir():
        print(f"batch: {args.submissions}: not a folder of submissions", file=sys.stderr)
        return 2
    started = time.monotonic()
    grades = grade_class(args.submissions, args.out, args.reports, args.jobs, args.timeout, args.marker,
                         progress=not args.no_progress, isolation=args.isolation)
    elapsed = time.monotonic() - started
    problems = [g for g in grades if g.status != "graded"]
    print(f"graded {len(grades)} submissions in {elapsed:.1f} s ({len(grades) / elapsed * 60:.1f} a minute) "
          f"with {args.jobs} jobs; wrote {args.out}" + (f" and {args.reports}/" if args.reports else ""))
    for grade in problems:
        print(f"  {grade.student}: 0 ({grade.status})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
