"""Every notebook runs, top to bottom, in a fresh kernel started in notebooks/,
as a student opens it."""

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need jupyter (requirements.txt)")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbclient (requirements.txt)")

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
sys.path.insert(0, str(REPO_ROOT / "notebooks"))
import lesson  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def remove_this_processs_workdir():
    """Importing lesson (as these tests do) made a work folder for this
    process, which lesson removes at exit: after the leak check has looked."""
    yield
    shutil.rmtree(lesson.WORKDIR, ignore_errors=True)


def test_there_are_six_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


def run_notebook(path: Path) -> tuple[object, str]:
    """Execute a notebook in a fresh kernel started in its folder: (notebook, its printed text)."""
    notebook = nbformat.read(path, as_version=4)
    started = time.monotonic()
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    took = time.monotonic() - started
    assert took < 60, f"{path.name} took {took:.0f} s"
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    return notebook, "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_a_fresh_kernel(path: Path):
    notebook, text = run_notebook(path)
    # Each notebook says plainly whether it ran live, captured, or on the sample.
    assert "Live session" in text or "recorded sample" in text
    # Every question cell ran its check (the placeholders are unanswered).
    questions = sum(1 for cell in notebook.cells if cell.cell_type == "code" and "check(answer" in cell.source)
    assert questions >= 1 and text.count("Not answered yet") == questions
    # The kernel is gone, and its work folder with it.
    assert not dead_kernels_folders()


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, Path]:
    from tests.release_helpers import make_release
    folder = tmp_path_factory.mktemp("releases")
    return {"starter": make_release(folder / "starter"), "solved": make_release(folder / "solved", solved=True)}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind, shown", [("starter", "Showing the recorded reference session"),
                                         ("solved", "Showing your lab/'s own session")])
@pytest.mark.parametrize("stem", ["03_integrity_and_errors", "04_concurrency"])
def test_in_a_release_the_notebook_shows_the_lab_where_it_runs_and_the_recording_otherwise(releases, kind, shown,
                                                                                           stem):
    # These two notebooks drive the implementation themselves (the client
    # library, four clients at once): in a release that is the student's lab/.
    notebook, text = run_notebook(releases[kind] / "notebooks" / f"{stem}.ipynb")
    assert text.count(shown) >= 1, text[:3000]
    assert ("Showing your lab/" in text) == (kind == "solved"), text[:3000]
    assert not dead_kernels_folders()


def dead_kernels_folders(directory=None) -> list:
    """Work folders (``ftpkit-notebook-PID-*``) of kernels that no longer run."""
    found = []
    for folder in Path(directory or tempfile.gettempdir()).glob(f"{lesson.WORKDIR_PREFIX}*"):
        pid = folder.name[len(lesson.WORKDIR_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not lesson._alive(int(pid)):
            found.append(folder)
    return found


def test_the_work_folder_goes_when_the_kernel_does():
    program = ("import lesson; (lesson.WORKDIR / 'capture.pcap').write_bytes(bytes(100000)); "
               "print(lesson.WORKDIR)")
    done = subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT / "notebooks",
                          capture_output=True, text=True, timeout=60)
    workdir = Path(done.stdout.strip().splitlines()[-1])
    assert workdir.name.startswith(lesson.WORKDIR_PREFIX) and workdir.parent == Path(tempfile.gettempdir())
    assert not workdir.exists()


def test_a_killed_kernels_folder_is_removed_by_the_next_one(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    dead = tmp_path / f"{lesson.WORKDIR_PREFIX}{gone}-abc"
    live = tmp_path / f"{lesson.WORKDIR_PREFIX}{lesson.os.getpid()}-def"
    unknown = tmp_path / f"{lesson.WORKDIR_PREFIX}xyz"          # not named by the kit: left alone
    for folder in (dead, live, unknown):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "session.log").write_text("{}")
    lesson._remove_leftovers(tmp_path)
    assert not dead.exists() and live.exists() and unknown.exists()


def test_the_first_cell_puts_the_root_first_before_importing_trace():
    for path in NOTEBOOKS:
        lines = nbformat.read(path, as_version=4).cells[1].source.splitlines()
        assert lines.index("sys.path.insert(0, str(ROOT))") < lines.index("import trace")


def test_check_tells_right_from_wrong(capsys):
    assert lesson.check(" Data ", "data") is True
    assert lesson.check(3, 4, hint="count again") is False
    assert lesson.check(..., 4) is None
    assert lesson.check(["b", "A"], ("a", "B")) is True
    out = capsys.readouterr().out
    assert "✓ Right." in out and "Hint: count again" in out and "Not answered yet" in out
