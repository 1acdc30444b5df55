"""Write the student release of the kit into a folder.

    python -m solutions.release DIR            # DIR must not exist, or be empty
    python -m solutions.release DIR --force    # replace DIR

The release is the kit without what students must not see: ``solutions/``
(the reference code, and this module), the hidden graded tests
(``tests/grading/hidden/``), the planted bugs (``tests/grading/bugs/``, which
are patches of the solutions), the kit's own meta-tests and CI, and any kit
test that needs the reference solutions to run. ``lab/`` is regenerated
first, so the release always carries the current starter.

In the release the autograder's default is ``--impl lab`` (there are no
solutions to default to), and the peers that stood in for the reference
(the reference server and client) are pyftpdlib and ftplib.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from . import generate

REPO_ROOT = Path(__file__).resolve().parent.parent

# Paths (relative to the repository root, POSIX style) never released.
EXCLUDED_PREFIXES = (
    "solutions/",
    "tests/grading/hidden/",
    "tests/grading/bugs/",
    "tests/test_lab_meta.py",
    ".ci/",
    ".git/",
    ".benchmarks/",
    ".pytest_cache/",
    ".hypothesis/",
)
EXCLUDED_PARTS = {"__pycache__", ".ipynb_checkpoints"}


def candidate_files(root: Path = REPO_ROOT) -> list[str]:
    """The kit's files: what git tracks or would track, else everything."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                                cwd=root, capture_output=True, check=True).stdout.decode().split("\0")
        files = [name for name in listed if name and (root / name).is_file()]
    except (OSError, subprocess.CalledProcessError):
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(set(files))


def needs_solutions(path: Path) -> bool:
    """A kit test (outside the grader) that imports or runs the reference code."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return "solutions" in text


def plan(root: Path = REPO_ROOT) -> tuple[list[str], list[str]]:
    """(files to release, kit tests left out because they need the solutions)."""
    released, left_out = [], []
    for name in candidate_files(root):
        if name.startswith(EXCLUDED_PREFIXES) or EXCLUDED_PARTS & set(name.split("/")):
            continue
        parts = name.split("/")
        if (len(parts) == 2 and parts[0] == "tests" and parts[1].startswith("test_")
                and parts[1].endswith(".py") and needs_solutions(root / name)):
            left_out.append(name)
            continue
        released.append(name)
    return released, left_out


def release(destination: Path, force: bool = False, root: Path = REPO_ROOT) -> tuple[list[str], list[str]]:
    destination = destination.resolve()
    if root.resolve() in (destination, *destination.parents):
        raise ValueError(f"{destination}: the release must go outside the kit")
    if destination.exists() and any(destination.iterdir()):
        if not force:
            raise ValueError(f"{destination} is not empty (use --force to replace it)")
        shutil.rmtree(destination)
    generate.write()                       # the starter, as the solutions are now
    released, left_out = plan(root)
    for name in released:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    return released, left_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solutions.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("destination", type=Path)
    parser.add_argument("--force", action="store_true", help="replace the destination if it is not empty")
    args = parser.parse_args(argv)
    try:
        released, left_out = release(args.destination, args.force)
    except (ValueError, generate.MarkerError) as err:
        print(f"release: {err}", file=sys.stderr)
        return 2
    print(f"{args.destination}: {len(released)} files; grade with `pytest` there (default --impl lab)")
    if left_out:
        print("left out (they need the reference solutions): " + ", ".join(left_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
