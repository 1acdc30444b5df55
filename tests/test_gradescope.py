"""Gradescope's autograder zip, tried as Gradescope runs it: unpacked into a
simulated /autograder tree (FTPKIT_AUTOGRADER_ROOT), `run_autograder` run on
a submission, results/results.json read back. The untouched starter scores
0, the solutions full marks (hidden tests included, hidden from students
until grades are published), and a cheat that rewrites the results at exit 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from solutions import generate, gradescope
from tests.release_helpers import EVERY_EXERCISE

REPO_ROOT = Path(__file__).resolve().parent.parent

# A planted cheat: the starter, plus a package __init__ that, in whatever
# process imports it, rewrites the grader's results.json at exit with full marks.
CHEAT_INIT = '''
import atexit, json, sys

def _full_marks():
    for flag, path in zip(sys.argv, sys.argv[1:]):
        if flag == "--gradescope":
            try:
                with open(path) as f:
                    doc = json.load(f)
            except Exception:
                doc = {"tests": []}
            for test in doc.get("tests", []):
                test["score"], test["status"] = test.get("max_score", 0), "passed"
            doc["score"] = sum(t.get("max_score", 0) for t in doc.get("tests", [])) or 100
            with open(path, "w") as f:
                json.dump(doc, f)

atexit.register(_full_marks)
'''


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    done = subprocess.run([sys.executable, "-m", "solutions.release", "--gradescope", str(path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return path


def run_autograder(bundle: Path, tree: Path, fill_submission) -> dict:
    """Unpack the bundle as Gradescope does, put a submission in, run it."""
    source = tree / "source"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(source)
    for script in gradescope.SCRIPTS:
        (source / script).chmod(0o755)          # zipfile does not restore modes
    shutil.copy(source / "run_autograder", tree / "run_autograder")
    (tree / "submission").mkdir()
    fill_submission(tree / "submission")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH"))}
    env.update(FTPKIT_AUTOGRADER_ROOT=str(tree), FTPKIT_PYTHON=sys.executable)
    done = subprocess.run([str(tree / "run_autograder")], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads((tree / "results" / "results.json").read_text())


def test_bundle_holds_the_grader_and_no_solutions(bundle):
    names = zipfile.ZipFile(bundle).namelist()
    assert "setup.sh" in names and "run_autograder" in names
    assert any(n.startswith("tests/grading/hidden/") for n in names)
    assert "tests/grading/plugin.py" in names and "tests/grading/batch.py" in names
    assert not any(n.startswith(("solutions/", "lab/", "tests/grading/bugs/", "tests/grading/cheats/"))
                   for n in names)
    modes = {i.filename: i.external_attr >> 16 for i in zipfile.ZipFile(bundle).infolist()}
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    setup = zipfile.ZipFile(bundle).read("setup.sh").decode()
    assert "requirements-grading.txt" in setup and "apt-get install" in setup


@pytest.mark.timeout(1600)
def test_starter_scores_zero(bundle, tmp_path):
    results = run_autograder(bundle, tmp_path / "autograder",
                             lambda sub: shutil.copytree(REPO_ROOT / "lab", sub / "lab"))
    assert results["tests"] and results["score"] == 0


@pytest.mark.timeout(1600)
def test_solutions_score_full_marks(bundle, tmp_path):
    def solutions_at_top_level(sub: Path) -> None:          # as a Gradescope upload of the files
        generate.write(generate.SOLUTIONS, sub, "lab", EVERY_EXERCISE)
    results = run_autograder(bundle, tmp_path / "autograder", solutions_at_top_level)
    tests = results["tests"]
    assert tests and all(t["status"] == "passed" for t in tests), [t["name"] for t in tests if t["status"] != "passed"]
    assert results["score"] == pytest.approx(sum(t["max_score"] for t in tests))
    hidden = [t for t in tests if t.get("visibility") == "after_published"]
    assert hidden, "the bundle's hidden tests ran, and students see them only once grades are published"


@pytest.mark.timeout(1600)
def test_a_cheat_that_rewrites_the_results_at_exit_scores_zero(bundle, tmp_path):
    def cheat(sub: Path) -> None:
        shutil.copytree(REPO_ROOT / "lab", sub / "lab")
        with open(sub / "lab" / "__init__.py", "a") as f:
            f.write(CHEAT_INIT)
    results = run_autograder(bundle, tmp_path / "autograder", cheat)
    assert results["score"] == 0 and all(t["score"] == 0 for t in results["tests"])


def test_a_submission_without_a_lab_gets_zero_and_the_reason(bundle, tmp_path):
    results = run_autograder(bundle, tmp_path / "autograder",
                             lambda sub: (sub / "answers.txt").write_text("no code\n"))
    assert results["score"] == 0 and "not a lab package" in results["output"]
