"""The student release is a product: what it holds, what a bare `pytest`
does there, and the handout's points against the grader's tests."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from solutions import release as release_module
from tests.release_helpers import make_release
from trace.reference import SCENARIOS, conversation

REPO_ROOT = Path(__file__).resolve().parent.parent
HANDOUT = REPO_ROOT / "lab" / "README.md"


def grade(folder: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """A bare `pytest` in ``folder`` (plus ``args``), with its results.json."""
    results = folder / "results.json"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--gradescope", str(results), "--basetemp", str(folder.parent / "basetemp"), *args],
                          cwd=folder, capture_output=True, text=True, timeout=900)
    return done, json.loads(results.read_text())


def summary_line(output: str) -> str:
    return [line for line in output.splitlines() if " in " in line and line.strip().endswith("s")][-1]


def test_release_holds_what_students_need_and_nothing_else(tmp_path):
    release = make_release(tmp_path / "release")
    files = {p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()}
    assert not any(f.startswith(("solutions/", "bench/", ".ci/")) for f in files)
    assert not any(f.startswith(("tests/grading/hidden/", "tests/grading/bugs/", "tests/grading/cheats/"))
                   for f in files)
    # Of tests/, only the autograder ships: a bare `pytest` is the grading run.
    assert {f for f in files if f.startswith("tests/")} <= {f for f in files if f.startswith("tests/grading/")}
    assert "tests/grading/plugin.py" in files and "lab/README.md" in files
    readme = (release / "README.md").read_text(encoding="utf-8")
    assert readme == release_module.RELEASE_README.read_text(encoding="utf-8")
    for absent in ("solutions", "bugs.toml", "hidden/", "python -m solutions"):
        assert absent not in readme
    for name in SCENARIOS:
        assert f"trace/samples/reference/{name}.log" in files, name
        assert f"trace/samples/reference/{name}.pcap" in files, name


def test_release_refuses_a_destination_inside_the_kit_or_not_empty(tmp_path):
    with pytest.raises(ValueError, match="outside the kit"):
        release_module.release(REPO_ROOT / "some-release")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    done = subprocess.run([sys.executable, "-m", "solutions.release", str(tmp_path / "full")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not empty" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_recorded_reference_sessions_are_whole():
    for name, scenario in SCENARIOS.items():
        pairs = conversation(REPO_ROOT / "trace/samples/reference" / f"{name}.log")
        quits = [p for p in pairs if p.startswith("QUIT -> 2")]
        assert len(quits) == scenario.clients, (name, pairs)


@pytest.mark.timeout(900)
def test_bare_pytest_in_a_solved_release_is_full_marks(tmp_path):
    release = make_release(tmp_path / "release", solved=True)
    done, results = grade(release)
    summary = summary_line(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "passed" in summary and "failed" not in summary and "error" not in summary, summary
    assert results["tests"] and all(t["status"] == "passed" for t in results["tests"])
    assert results["score"] == sum(t["max_score"] for t in results["tests"])


@pytest.mark.timeout(900)
def test_bare_pytest_in_a_starter_release_fails_without_errors(tmp_path):
    release = make_release(tmp_path / "release")
    done, results = grade(release)
    summary = summary_line(done.stdout)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "failed" in summary and "passed" not in summary and "error" not in summary, summary
    assert results["score"] == 0
    assert all(t["extra_data"]["outcome"] == "failed" for t in results["tests"]), \
        [t["name"] for t in results["tests"] if t["extra_data"]["outcome"] != "failed"]


# --- the handout's points are the grader's ------------------------------------------------

def collected_points() -> dict[str, dict[str, float]]:
    """Exercise -> {"visible": points, "hidden": points}, from the grader's own
    collection of the kit's graded tests (hidden ones included)."""
    out = REPO_ROOT / ".collected-points.json"
    try:
        subprocess.run([sys.executable, "-m", "pytest", "tests/grading", "--collect-only", "-q",
                        "-p", "no:cacheprovider", "--gradescope", str(out)],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True)
        tests = json.loads(out.read_text())["tests"]
    finally:
        out.unlink(missing_ok=True)
    points: dict = defaultdict(lambda: {"visible": 0.0, "hidden": 0.0})
    for test in tests:
        kind = "visible" if test["visibility"] == "visible" else "hidden"
        points[test["tags"][0]][kind] += test["max_score"]
    return dict(points)


def handout_points() -> dict[str, tuple[float, float, float]]:
    """Exercise -> (total, visible, hidden) from the handout's table."""
    table = {}
    for number, total, visible, hidden in re.findall(
            r"^\| (\d) \| [^|]+ \| (\d+) \((\d+) \+ (\d+)\) \|$", HANDOUT.read_text(encoding="utf-8"), re.M):
        table[f"ex{number}"] = (float(total), float(visible), float(hidden))
    return table


def test_handout_points_are_visible_plus_hidden_points_of_the_graded_tests():
    handout, collected = handout_points(), collected_points()
    assert set(handout) == set(collected), (handout, collected)
    text = HANDOUT.read_text(encoding="utf-8")
    for exercise, (total, visible, hidden) in handout.items():
        assert total == visible + hidden, exercise
        assert (visible, hidden) == (round(collected[exercise]["visible"], 3),
                                     round(collected[exercise]["hidden"], 3)), (exercise, collected[exercise])
        heading = re.search(rf"^## Exercise {exercise[2:]}\b.*\((\d+) points\)$", text, re.M)
        assert heading and float(heading.group(1)) == total, exercise
    assert re.search(r"hidden\W* tests", text, re.I), "the handout says hidden tests exist"


def test_a_session_unlike_the_reference_falls_back_to_the_recording(tmp_path):
    from trace.reference import differs, live_or_recorded, recorded
    passive, _ = recorded("passive")
    assert differs("passive", passive) is None
    assert differs("passive", recorded("active")[0]) is not None      # PORT is not PASV
    broken = tmp_path / "broken.log"
    lines = passive.read_text().splitlines(keepends=True)
    broken.write_text("".join(lines[: len(lines) // 3]))                 # a session that stopped early
    assert "stopped after" in differs("passive", broken)
    said = []
    shown = live_or_recorded("passive", lambda: None, broken, say=said.append)
    assert shown == (passive, REPO_ROOT / "trace/samples/reference/passive.pcap")
    assert len(said) == 1 and said[0].startswith("Showing the recorded reference session")
    shown = live_or_recorded("passive", lambda: None, passive, say=said.append)
    assert shown[0] == passive and said[-1].startswith("Showing your lab/'s own session")

    def hangs():
        raise subprocess.TimeoutExpired("lab.client", 120)
    assert live_or_recorded("passive", hangs, tmp_path / "none.log", say=said.append)[0] == passive
    assert "did not run" in said[-1]
