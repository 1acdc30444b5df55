"""A whole class in one command: `python -m tests.grading.batch`, on a small
class of real submissions: the solutions (lab/ inside), the untouched starter
(modules at the top level), one that does not import, one that hangs, and one
that is not a lab at all. Graded on exercise 1 only, to keep the test short."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from solutions import generate
from tests.release_helpers import EVERY_EXERCISE

REPO_ROOT = Path(__file__).resolve().parent.parent


def make_class(folder: Path) -> Path:
    generate.write(generate.SOLUTIONS, folder / "alice" / "lab", "lab", EVERY_EXERCISE)
    (folder / "bob").mkdir()
    for module in (REPO_ROOT / "lab").glob("*.py"):                 # the starter, at the top level
        shutil.copy(module, folder / "bob" / module.name)
    shutil.copytree(REPO_ROOT / "lab", folder / "carol" / "lab")
    with open(folder / "carol" / "lab" / "__init__.py", "a") as f:
        f.write("import no_such_module_anywhere\n")
    shutil.copytree(folder / "alice" / "lab", folder / "dave" / "lab")
    with open(folder / "dave" / "lab" / "__init__.py", "a") as f:
        f.write("while True:\n    pass\n")
    (folder / "eve").mkdir()
    (folder / "eve" / "essay.txt").write_text("I did not do the lab.\n")
    return folder


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in command:
                found.append(command)
    return found


@pytest.mark.timeout(900)
def test_batch_grades_a_class_and_gives_every_failure_a_reason(tmp_path):
    # --timeout 20: dave's lab hangs at import and is stopped there (the test waits
    # that long); one exercise of the others is graded in 3 to 5 s, four times
    # less even on a loaded machine.
    submissions = make_class(tmp_path / "submissions")
    gradebook, reports = tmp_path / "gradebook.csv", tmp_path / "reports"
    done = subprocess.run([sys.executable, "-m", "tests.grading.batch", str(submissions), "--out", str(gradebook),
                           "--reports", str(reports), "--jobs", "3", "--timeout", "20", "-m", "ex1",
                           "--no-progress"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "graded 5 submissions" in done.stdout
    rows = {row["student"]: row for row in csv.DictReader(gradebook.open())}
    assert set(rows) == {"alice", "bob", "carol", "dave", "eve"}
    assert list(rows["alice"]) == ["student", "ex1", "total", "status"]

    alice = (reports / "alice.html").read_text()
    maximum = re.search(r"<td>ex1</td><td>([\d.]+)</td><td>([\d.]+)</td>", alice)
    assert rows["alice"]["status"] == "graded" and maximum and maximum.group(1) == maximum.group(2)
    assert float(rows["alice"]["total"]) == float(maximum.group(2)) > 0

    assert rows["bob"]["status"] == "graded" and float(rows["bob"]["total"]) == 0
    assert rows["carol"]["status"].startswith("does not import") and "no_such_module_anywhere" in rows["carol"]["status"]
    assert rows["dave"]["status"].startswith("timed out") and float(rows["dave"]["total"]) == 0
    assert rows["eve"]["status"].startswith("not a lab package") and float(rows["eve"]["total"]) == 0

    # The starter's report: each failing test with its steps, and session diagrams from its traces.
    bob = (reports / "bob.html").read_text()
    assert "Failing tests" in bob and "Unsuccessful expectation" in bob
    frames = re.findall(r"<iframe src='([^']+)'>", bob)
    assert frames and all((reports / frame).is_file() for frame in frames)
    assert "<svg" in (reports / frames[0]).read_text() or "<pre" in (reports / frames[0]).read_text()
    # Nothing a submission started outlives the batch (the hang included).
    assert not processes_mentioning(str(tmp_path)), processes_mentioning(str(tmp_path))


def test_batch_refuses_a_folder_that_is_not_there(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tests.grading.batch", str(tmp_path / "nothing")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not a folder of submissions" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(300)
def test_without_tmpdir_a_grading_works_in_memory_and_leaves_nothing_there(tmp_path):
    # Where TMPDIR is not set (a Gradescope container, an instructor's shell) the
    # gradings keep their files on the memory filesystem, if it has room; they
    # are gone when the batch ends. (The suite sets TMPDIR: its other gradings
    # stay in the folder its leak check watches.)
    from tests.grading import batch
    generate.write(generate.SOLUTIONS, tmp_path / "class" / "alice" / "lab", "lab", EVERY_EXERCISE)
    environment = {k: v for k, v in os.environ.items() if k != "TMPDIR"}
    memory = Path(batch.MEMORY_FILESYSTEM)
    before = set(memory.glob("ftpkit-*")) if memory.is_dir() else set()
    probe = subprocess.run([sys.executable, "-c", "from tests.grading import batch; print(batch.scratch_root())"],
                           cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=60)
    chosen = probe.stdout.strip()
    if memory.is_dir():
        room = os.statvfs(memory)
        if room.f_bavail * room.f_frsize >= batch.MEMORY_NEEDED:
            assert chosen == str(memory), probe.stderr
    done = subprocess.run([sys.executable, "-m", "tests.grading.batch", str(tmp_path / "class"),
                           "--out", str(tmp_path / "gradebook.csv"), "-m", "ex1", "--no-progress"],
                          cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(csv.DictReader((tmp_path / "gradebook.csv").open()))
    assert row["status"] == "graded" and float(row["total"]) > 0, row
    assert (set(memory.glob("ftpkit-*")) if memory.is_dir() else set()) == before
    print(f"the gradings' files went to {chosen}")
