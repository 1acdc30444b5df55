"""Meta-tests of the student lab: the generator, the release, and the grader
itself, run on the untouched starter, on the solutions, and on solutions
with planted bugs (tests/grading/bugs/bugs.toml).

Each grading runs the real grader in its own process, as an instructor
would (``pytest tests/grading --impl ... --gradescope results.json``); the
gradings run a few at a time, once per session of this module.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from solutions import generate, release
from tests.grading.sandbox import SLOT_VARIABLE, SLOTS

REPO_ROOT = Path(__file__).resolve().parent.parent
BUGS = tomllib.loads((REPO_ROOT / "tests/grading/bugs/bugs.toml").read_text(encoding="utf-8"))["bug"]
CHEATS = tomllib.loads((REPO_ROOT / "tests/grading/cheats/cheats.toml").read_text(encoding="utf-8"))["cheat"]
AS_ROOT = os.geteuid() == 0
EXERCISES = ["ex1", "ex2", "ex3", "ex4", "ex5", "ex6"]
STARTER_LIMIT = 60.0         # seconds: grading the untouched starter must finish within this
GRADING_TIMEOUT = 420.0      # seconds any one grading may take before it counts as a hang (a loaded machine is slow)

# The first test to use `gradings` waits for all of them (about 40 gradings, a
# few at a time): far longer than one test's default timeout.
pytestmark = pytest.mark.timeout(1800)


# --- the generator --------------------------------------------------------------

def test_lab_is_what_the_generator_makes():
    problems = generate.drift()
    assert not problems, ("lab/ differs from what `python -m solutions.generate` makes "
                          "(lab/ is never edited by hand; run the generator):\n" + "\n".join(problems))


def test_every_region_becomes_a_stub_naming_its_exercise():
    for path in generate.solution_modules():
        regions = generate.find_regions(path.name, path.read_text(encoding="utf-8"))
        lab = (REPO_ROOT / "lab" / path.name).read_text(encoding="utf-8")
        assert "### BEGIN SOLUTION" not in lab and "### END SOLUTION" not in lab, path.name
        for region in regions:
            key = (path.name, region.exercise, region.function.rsplit(".", 1)[-1])
            stub = f"raise NotImplementedError({f'{region.exercise}: {region.hint}'!r})"
            if key in generate.STARTER:
                assert f"# {region.exercise}: {region.hint}" in lab, (path.name, region.function)
            else:
                assert f"{region.indent}{stub}\n" in lab, (path.name, region.function, stub)


def test_generator_refuses_broken_markers():
    with pytest.raises(generate.MarkerError, match="never ended"):
        generate.find_regions("x.py", "def f():\n    ### BEGIN SOLUTION ex1: do it\n    pass\n")
    with pytest.raises(generate.MarkerError, match="exercise and a hint"):
        generate.find_regions("x.py", "def f():\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION\n")
    with pytest.raises(generate.MarkerError, match="without BEGIN"):
        generate.find_regions("x.py", "def f():\n    pass\n    ### END SOLUTION\n")


def test_check_mode_reports_drift(tmp_path):
    lab = tmp_path / "lab"
    generate.write(lab=lab)
    assert generate.drift(lab=lab) == []
    (lab / "helper.py").write_text((lab / "helper.py").read_text() + "# edited by hand\n")
    (lab / "extra.py").write_text("")
    problems = "\n".join(generate.drift(lab=lab))
    assert "edited by hand" in problems and "extra.py" in problems


def test_starter_server_answers_502_for_a_stub_and_keeps_serving(tmp_path):
    """A lab with exercise 1 done: PASV hits exercise 2's stub."""
    generate.write(lab=tmp_path / "labx", package="labx", keep=frozenset({"ex1"}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO_ROOT)]))
    server = subprocess.Popen([sys.executable, "-m", "labx.server", "--root", str(tmp_path), "0"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline().rsplit(":", 1)[1])
        import socket
        with socket.create_connection(("127.0.0.1", port), timeout=5) as control:
            control.sendall(b"USER a\r\nPASS b\r\nPASV\r\nNOOP\r\nQUIT\r\n")
            received = b""
            while b"221" not in received:
                chunk = control.recv(4096)
                assert chunk, received
                received += chunk
        lines = received.decode().splitlines()
        assert lines[3].startswith("502 ex2") and "not implemented yet" in lines[3], lines
        assert lines[4].startswith("200") and lines[5].startswith("221"), lines
    finally:
        server.terminate()
        server.wait(timeout=5)
        server.stdout.close()
        server.stderr.close()


# --- the release ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def student_release(tmp_path_factory) -> Path:
    destination = tmp_path_factory.mktemp("release") / "ftpkit"
    release.release(destination)
    return destination


def test_release_leaves_out_solutions_and_hidden_tests(student_release):
    files = {p.relative_to(student_release).as_posix() for p in student_release.rglob("*") if p.is_file()}
    assert not [f for f in files if f.startswith(("solutions/", "tests/grading/hidden/", "tests/grading/bugs/"))]
    assert "tests/test_lab_meta.py" not in files
    assert {"lab/server.py", "lab/README.md", "conftest.py", "tests/grading/plugin.py",
            ".github/workflows/classroom.yml"} <= files
    for name in files:
        if name.startswith("tests/test_") and name.endswith(".py"):
            assert "solutions" not in (student_release / name).read_text(), name


# --- gradings, run in a small pool of processes -------------------------------------------

@dataclass
class Grading:
    label: str
    results: dict
    seconds: float
    returncode: int
    output: str
    path: Path | None = None
    raw: bytes = b""             # results.json as the grader left it
    left: list | None = None     # processes of its student user alive right after it ended

    def test(self, name: str) -> dict:
        for test in self.results.get("tests", []):
            if test["extra_data"]["nodeid"].split("::")[-1] == name:
                return test
        raise AssertionError(f"{self.label}: no graded test named {name}:\n{self.output[-3000:]}")

    def by_exercise(self) -> dict[str, tuple[float, float]]:
        table: dict[str, list[float]] = {}
        for test in self.results.get("tests", []):
            row = table.setdefault(test["tags"][0], [0.0, 0.0])
            row[0] += test["score"]
            row[1] += test["max_score"]
        return {ex: (round(a, 3), round(b, 3)) for ex, (a, b) in table.items()}


def grade(label: str, impl: str, workdir: Path, *selection: str, cwd: Path = REPO_ROOT,
          slot: int | None = None) -> Grading:
    results = workdir / f"{label}.json"
    # Only the plugins the grader needs: the kit's other pytest plugins (notebooks,
    # benchmarks, hypothesis) take seconds to import and grade nothing.
    command = [sys.executable, "-m", "pytest", "tests/grading", "-p", "no:cacheprovider", "-p", "pytest_timeout",
               "-p", "no:unraisableexception", "-q",
               "--gradescope", str(results), *(["--impl", impl] if impl else []), *selection]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
                                        **({SLOT_VARIABLE: str(slot)} if slot is not None else {})))
    try:
        output, _ = process.communicate(timeout=GRADING_TIMEOUT)
        returncode = process.returncode
    except subprocess.TimeoutExpired:
        # Ctrl-C, not a kill: pytest then tears its fixtures down, and the sandbox
        # kills the student processes of this grading.
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        returncode, output = -1, f"the grading hung for {GRADING_TIMEOUT} s\n{output or ''}"
    seconds = time.monotonic() - started
    raw = results.read_bytes() if results.exists() else b""
    try:
        document = json.loads(raw) if raw else {}
    except ValueError:
        document = {}
    return Grading(label, document, seconds, returncode, output, results, raw)


def bug_package(bug: dict, parent: Path) -> Path:
    """A copy of solutions/ as package bug_<name>, with the bug applied."""
    package = parent / f"bug_{bug['name']}"
    package.mkdir(parents=True)
    for path in generate.solution_modules():
        text = re.sub(r"\bsolutions\b", package.name, path.read_text(encoding="utf-8"))
        if path.name == bug["file"]:
            count = text.count(bug["old"])
            assert count == 1, f"bug {bug['name']}: its `old` text occurs {count} times in solutions/{bug['file']}"
            text = text.replace(bug["old"], bug["new"])
        (package / path.name).write_text(text, encoding="utf-8")
    return package


def cheat_package(cheat: dict, parent: Path) -> Path:
    """The untouched starter as package cheat_<name>, with the cheat applied."""
    package = parent / f"cheat_{cheat['name']}"
    generate.write(lab=package, package=package.name, keep=frozenset())
    text = cheat["text"].replace("{repo}", str(REPO_ROOT)).replace("{package}", package.name)
    for name in cheat.get("vendor", []):
        module = __import__(name)
        shutil.copytree(Path(module.__file__).parent, package / "_vendor" / name,
                        ignore=shutil.ignore_patterns("__pycache__", "test*"))
    target = package / cheat["file"]
    if cheat.get("replace"):
        target.write_text(text, encoding="utf-8")
    else:
        target.write_text(target.read_text(encoding="utf-8") + "\n" + text, encoding="utf-8")
    return package


def only_stubbed(exercise: str, parent: Path) -> Path:
    """A lab in which every exercise but one is solved."""
    package = parent / f"only_{exercise}"
    generate.write(lab=package, package=package.name, keep=frozenset(set(EXERCISES) - {exercise}))
    return package


@pytest.fixture(scope="module")
def gradings(tmp_path_factory, student_release) -> dict[str, Grading]:
    workdir = tmp_path_factory.mktemp("gradings")
    jobs = {
        "starter": ("lab", ()),
        "solutions": ("solutions", ()),
    }
    for bug in BUGS:
        jobs[f"bug {bug['name']}"] = (str(bug_package(bug, workdir / "bugs")), ("-m", bug["exercise"]))
    for exercise in EXERCISES:
        jobs[f"only {exercise}"] = (str(only_stubbed(exercise, workdir / "partial")), ("-m", exercise))
    if AS_ROOT:
        for cheat in CHEATS:
            selection = ("-m", cheat["exercises"]) if cheat.get("exercises") else ()
            jobs[f"cheat {cheat['name']}"] = (str(cheat_package(cheat, workdir / "cheats")), selection)
        # The control: without the sandbox the same cheat works, so the zero above is the sandbox's doing.
        jobs["control import_solutions"] = (str(workdir / "cheats" / "cheat_import_solutions"),
                                            ("--isolation", "off", "-m", "ex1"))
    # A student who finished everything, graded in the release: solutions copied over lab/.
    finished = student_release / "lab"
    for path in generate.solution_modules():
        shutil.copy2(path, finished / path.name)
    jobs["release"] = ("", ())

    # Two gradings per core: most of a grading's time is waiting on sockets. Each
    # grading runs its student code as the user of a slot it holds until its
    # survivors are counted, so no other grading's processes are counted as its own.
    workers = max(2, 2 * (os.cpu_count() or 1))
    slots = queue.SimpleQueue()
    for slot in range(SLOTS - workers, SLOTS):
        slots.put(slot)

    def run(item):
        label, (impl, selection) = item
        cwd = student_release if label == "release" else REPO_ROOT
        slot = slots.get()
        try:
            grading = grade(label.replace(" ", "_"), impl, workdir, *selection, cwd=cwd, slot=slot)
            uid = _student_uid(grading)
            if uid is not None:
                grading.left = _processes_of(uid)
        finally:
            slots.put(slot)
        return label, grading

    # The starter alone first, so its time is measured without the pool's load.
    done = dict([run(("starter", jobs.pop("starter")))])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done.update(pool.map(run, jobs.items()))
    if AS_ROOT:
        time.sleep(4)        # a detached cheat sleeps 2.5 s past its grading before it strikes
    return done


def _no_harness_error(grading: Grading) -> None:
    assert grading.returncode in (0, 1), \
        f"{grading.label}: the grader itself failed (exit status {grading.returncode}):\n{grading.output[-4000:]}"
    assert "INTERNALERROR" not in grading.output and "ERROR collecting" not in grading.output, grading.output[-4000:]
    assert grading.results.get("tests"), f"{grading.label}: no results.json:\n{grading.output[-4000:]}"


def test_starter_scores_zero_quickly_without_harness_errors(gradings):
    starter = gradings["starter"]
    _no_harness_error(starter)
    assert starter.seconds < STARTER_LIMIT, f"grading the starter took {starter.seconds:.1f} s"
    by_exercise = starter.by_exercise()
    assert set(by_exercise) == set(EXERCISES)
    assert all(score == 0 for score, _ in by_exercise.values()), by_exercise
    statuses = {t["extra_data"]["outcome"] for t in starter.results["tests"]}
    assert statuses == {"failed"}, f"every test fails in its own body (no setup errors, no skips): {statuses}"
    hangs = [t["name"] for t in starter.results["tests"] if "Timeout" in t["output"] or "within" in t["output"]
             and "still waiting" in t["output"]]
    assert not hangs, f"starter tests that hung until their timeout: {hangs}"


def test_solutions_score_full_marks(gradings):
    solutions = gradings["solutions"]
    _no_harness_error(solutions)
    failed = [t["name"] + "\n" + t["output"] for t in solutions.results["tests"] if t["status"] != "passed"]
    assert not failed, "\n\n".join(failed)
    assert solutions.results["score"] == sum(t["max_score"] for t in solutions.results["tests"])
    main = sum(t["max_score"] for t in solutions.results["tests"] if t["tags"] != ["ex6"])
    assert main == 100, f"the main exercises are worth {main} points, not 100"


@pytest.mark.parametrize("exercise", EXERCISES)
def test_each_exercise_needs_its_own_code(gradings, exercise):
    """With every exercise solved but one, that one scores 0."""
    grading = gradings[f"only {exercise}"]
    _no_harness_error(grading)
    assert grading.by_exercise() == {exercise: (0, grading.by_exercise()[exercise][1])}, grading.by_exercise()


@pytest.mark.parametrize("bug", BUGS, ids=[bug["name"] for bug in BUGS])
def test_planted_bug_is_caught(gradings, bug):
    grading = gradings[f"bug {bug['name']}"]
    _no_harness_error(grading)
    test = grading.test(bug["caught_by"])
    assert test["status"] == "failed", f"{bug['description']}: {bug['caught_by']} passed"
    assert bug["message"].lower() in test["output"].lower(), \
        f"{bug['caught_by']} failed, but its message does not say {bug['message']!r}:\n{test['output']}"


def test_release_grades_a_finished_lab_with_full_marks(gradings):
    grading = gradings["release"]
    _no_harness_error(grading)
    failed = [t["name"] + "\n" + t["output"] for t in grading.results["tests"] if t["status"] != "passed"]
    assert not failed, "\n\n".join(failed)
    assert "Implementation under test: lab" in grading.results["output"]
    assert not any("hidden" in t["extra_data"]["nodeid"] for t in grading.results["tests"])


# --- the grader's accounting ------------------------------------------------------------

SYNTHETIC = """
import time
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("a fixture that fails")

@pytest.mark.ex1
@pytest.mark.points(2)
def test_passes():
    pass

@pytest.mark.ex1
@pytest.mark.points(3)
def test_skipped():
    pytest.skip("not today")

@pytest.mark.ex2
@pytest.mark.points(4)
def test_errors(broken):
    pass

@pytest.mark.ex2
@pytest.mark.points(5)
@pytest.mark.timeout(1)
def test_hangs():
    time.sleep(30)

@pytest.mark.ex2
@pytest.mark.points(6)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_shared(n):
    assert n != 3
"""


def test_skips_errors_and_timeouts_count_zero_but_stay_in_the_total(tmp_path):
    (tmp_path / "test_synthetic.py").write_text(SYNTHETIC)
    results = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path / "test_synthetic.py"), "-q",
                          "-p", "no:cacheprovider", "-p", "pytest_timeout", "-p", "tests.grading.plugin",
                          "-p", "tests.grading.fixtures", "--gradescope", str(results)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"))
    document = json.loads(results.read_text())
    tests = {t["extra_data"]["nodeid"].split("::")[-1]: t for t in document["tests"]}
    assert {name: (t["score"], t["max_score"], t["extra_data"]["outcome"]) for name, t in tests.items()} == {
        "test_passes": (2, 2, "passed"),
        "test_skipped": (0, 3, "skipped"),
        "test_errors": (0, 4, "error"),
        "test_hangs": (0, 5, "failed"),
        "test_shared[1]": (2, 2, "passed"),
        "test_shared[2]": (2, 2, "passed"),
        "test_shared[3]": (0, 2, "failed"),
    }, run.stdout
    assert document["score"] == 6
    assert "still waiting after 1 s" in tests["test_hangs"]["output"]
    assert "total" in run.stdout and "6 / 20" in run.stdout.replace("  ", " ").replace("  ", " "), run.stdout


# --- planted cheats: each scores 0 (tests/grading/cheats/cheats.toml) ------------------------

def _student_uid(grading: Grading) -> int | None:
    import pwd
    match = re.search(r"student code ran as (ftpkit-student\d+)", grading.output)
    return pwd.getpwnam(match.group(1)).pw_uid if match else None


def _processes_of(uid: int) -> list[str]:
    """Live processes of a user: "pid name (state, started s ago): command line"."""
    boot = float(next(line.split()[1] for line in Path("/proc/stat").read_text().splitlines()
                      if line.startswith("btime")))
    ticks = os.sysconf("SC_CLK_TCK")
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                status = Path(f"/proc/{entry.name}/status").read_text()
                started = boot + int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
                command = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
            except (OSError, IndexError, ValueError):
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if int(fields["Uid"].split()[0]) != uid or fields["State"].strip().startswith("Z"):
                continue
            found.append(f"{entry.name} {fields['Name'].strip()} ({fields['State'].strip()}, started "
                         f"{time.time() - started:.0f} s ago): {command}")
    return found


@pytest.mark.skipif(not AS_ROOT, reason="the sandbox is complete only as root (its own user, the kit hidden): "
                                        "CI runs this as root")
@pytest.mark.parametrize("cheat", CHEATS, ids=[cheat["name"] for cheat in CHEATS])
def test_planted_cheat_scores_zero(gradings, cheat):
    grading = gradings[f"cheat {cheat['name']}"]
    _no_harness_error(grading)
    scored = {t["name"]: t["score"] for t in grading.results["tests"] if t["score"]}
    assert grading.results["score"] == 0 and not scored, f"{cheat['description']}: scored {scored}"
    if not cheat.get("exercises"):
        assert len(grading.results["tests"]) == len(gradings["starter"].results["tests"]), \
            "the cheat's grading left tests out of results.json"
    # results.json is still what the grader wrote, seconds after the grading ended.
    assert grading.path.read_bytes() == grading.raw, f"{cheat['name']}: results.json changed after the grading"
    # Nothing of the submission outlived the grading.
    assert _student_uid(grading) is not None, \
        f"the grader did not say which user ran the student code:\n{grading.output[-2000:]}"
    assert grading.left == [], f"{cheat['name']}: processes of the student user survived: {grading.left}"
    # Nothing was written into the kit.
    for name in ("tests/grading/conftest.py", "tests/grading/test_zz_cheat.py"):
        assert not (REPO_ROOT / name).exists(), f"{cheat['name']} wrote {name}"
    assert "cheat was here" not in (REPO_ROOT / "conftest.py").read_text()
    leak = cheat.get("leak")
    if leak:
        assert leak not in grading.raw.decode() and leak not in grading.output, \
            f"{cheat['name']}: the hidden tests' text reached the results"
        test = grading.test("test_parse_command")
        assert "LEAK" in test["output"], "the leaking cheat's exception is shown (so the check above means something)"


@pytest.mark.skipif(not AS_ROOT, reason="the control of the cheats' sandbox; the cheats run only as root")
def test_a_cheat_works_without_the_sandbox(gradings):
    """import_solutions graded with --isolation off scores: the sandbox is what stops it."""
    grading = gradings["control import_solutions"]
    _no_harness_error(grading)
    assert grading.results["score"] > 0, grading.output[-3000:]
    assert "isolation: weaker" in grading.output
