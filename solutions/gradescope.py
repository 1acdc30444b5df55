"""Build Gradescope's autograder zip for the lab.

    python -m solutions.release --gradescope autograder.zip
    python -m solutions.gradescope autograder.zip            # the same

Gradescope's autograder specification: the zip holds ``setup.sh`` (run once,
as root, when Gradescope builds the image on its Ubuntu base) and
``run_autograder`` (run for every submission); the zip is unpacked into
``/autograder/source``, the student's files are in ``/autograder/submission``,
and ``run_autograder`` must write ``/autograder/results/results.json``.

The bundle is the autograder and what it runs on: ``tests/grading/`` with the
hidden tests (their results are marked ``after_published``), ``trace/`` (the
grader reads the traces), the root ``conftest.py`` and ``pyproject.toml``,
and the two scripts from ``solutions/gradescope_templates/``. It holds no
lab (the submission is the lab), no solutions (the grader's reference peers
are pyftpdlib and ftplib, as in a student release), no planted bugs or
cheats, no notebooks and no recorded samples.

``run_autograder`` grades through ``python -m tests.grading.batch --one``,
the batch grader's single-submission mode, so Gradescope and a whole class
graded locally score alike. ``FTPKIT_AUTOGRADER_ROOT`` replaces
``/autograder`` (the kit's test runs the bundle on a simulated tree).
"""

from __future__ import annotations

import argparse
import stat
import sys
import zipfile
from pathlib import Path

from .kitfiles import EXCLUDED_PARTS, REPO_ROOT, candidate_files

TEMPLATES = Path(__file__).resolve().parent / "gradescope_templates"
SCRIPTS = ("setup.sh", "run_autograder")

# What grading needs on Gradescope's image (the kit's requirements.txt also
# has the notebooks' packages, which grading does not).
REQUIREMENTS = """\
pytest>=8
pytest-timeout>=2.3
pyftpdlib>=2.0
rich>=13
scapy>=2.5
"""

# Of the kit's files, the bundle takes these folders and files...
INCLUDED_PREFIXES = ("tests/grading/", "trace/")
INCLUDED_FILES = ("conftest.py", "pyproject.toml")
# ...except these.
EXCLUDED_PREFIXES = ("tests/grading/bugs/", "tests/grading/cheats/", "trace/samples/")


def bundle_files(root: Path = REPO_ROOT) -> list[str]:
    chosen = []
    for name in candidate_files(root):
        if EXCLUDED_PARTS & set(name.split("/")):
            continue
        if name in INCLUDED_FILES or (name.startswith(INCLUDED_PREFIXES) and not name.startswith(EXCLUDED_PREFIXES)):
            chosen.append(name)
    return chosen


def _add(archive: zipfile.ZipFile, name: str, data: bytes, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))   # reproducible
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
    archive.writestr(info, data)


def build(destination: Path, root: Path = REPO_ROOT) -> list[str]:
    """Write the autograder zip; returns the names it holds."""
    destination = Path(destination)
    if destination.is_dir():
        raise ValueError(f"{destination} is a folder; give the zip's file name (e.g. autograder.zip)")
    destination.parent.mkdir(parents=True, exist_ok=True)
    names = []
    partial = destination.with_name(destination.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for script in SCRIPTS:
            _add(archive, script, (TEMPLATES / script).read_bytes(), executable=True)
            names.append(script)
        _add(archive, "requirements-grading.txt", REQUIREMENTS.encode())
        names.append("requirements-grading.txt")
        for name in bundle_files(root):
            _add(archive, name, (root / name).read_bytes())
            names.append(name)
    partial.replace(destination)        # never a half-written zip under the real name
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solutions.gradescope", description=__doc__.split("\n\n")[0])
    parser.add_argument("zip", type=Path, help="the autograder zip to write, e.g. autograder.zip")
    args = parser.parse_args(argv)
    try:
        names = build(args.zip)
    except (ValueError, OSError) as err:
        print(f"gradescope: {err}", file=sys.stderr)
        return 2
    hidden = sum(1 for n in names if n.startswith("tests/grading/hidden/"))
    print(f"{args.zip}: {len(names)} files ({hidden} of hidden tests); upload it as the "
          "assignment's autograder on Gradescope (Ubuntu base image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
