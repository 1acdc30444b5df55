"""Write the student release of the kit into a folder.

    python -m solutions.release DIR            # DIR must not exist, or be empty
    python -m solutions.release DIR --force    # replace DIR
    python -m solutions.release --gradescope autograder.zip   # Gradescope's autograder (see gradescope.py)

The release is the kit without what students must not see: ``solutions/``
(the reference code, and this module), the hidden graded tests
(``tests/grading/hidden/``), the planted bugs and cheats
(``tests/grading/bugs/``, ``tests/grading/cheats/``), the kit's own tests,
benchmarks and CI. Of ``tests/`` only the autograder ships, so ``pytest`` in a
release is the grading run and nothing else: the kit's own tests check the
instructor's kit and many of them need the reference. ``lab/`` is
regenerated first, so the release always carries the current starter.

The release has its own README (``solutions/release_README.md``: set-up, the
exercises, grading, the viewer, the recorded reference sessions), which names
only what the release contains; the instructor's README stays in the kit.

In the release the autograder's default is ``--impl lab`` (there are no
solutions to default to), and the peers that stood in for the reference
(the reference server and client) are pyftpdlib and ftplib.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from . import generate, gradescope
from .kitfiles import EXCLUDED_PARTS, REPO_ROOT, candidate_files

# The release's README, written over the kit's (which is the instructor's).
RELEASE_README = Path(__file__).resolve().parent / "release_README.md"

# Of tests/, only the autograder ships (a bare `pytest` there is the grading).
SHIPPED_TESTS = "tests/grading/"

# Paths (relative to the repository root, POSIX style) never released.
EXCLUDED_PREFIXES = (
    "solutions/",
    "tests/grading/hidden/",
    "tests/grading/bugs/",
    "tests/grading/cheats/",
    "bench/",
    ".ci/",
    ".git/",
    ".benchmarks/",
    ".pytest_cache/",
    ".hypothesis/",
)


def plan(root: Path = REPO_ROOT) -> tuple[list[str], list[str]]:
    """(files to release, the kit's own tests left out of it)."""
    released, left_out = [], []
    for name in candidate_files(root):
        if name.startswith(EXCLUDED_PREFIXES) or EXCLUDED_PARTS & set(name.split("/")):
            continue
        if name.startswith("tests/") and not name.startswith(SHIPPED_TESTS):
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
    shutil.copy2(RELEASE_README, destination / "README.md")
    return released, left_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solutions.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("destination", type=Path, nargs="?", help="the folder to write the release into")
    parser.add_argument("--force", action="store_true", help="replace the destination if it is not empty")
    parser.add_argument("--gradescope", type=Path, metavar="ZIP",
                        help="also (or only) build Gradescope's autograder zip, e.g. autograder.zip")
    args = parser.parse_args(argv)
    if args.destination is None and args.gradescope is None:
        parser.error("give a destination folder, or --gradescope ZIP, or both")
    if args.gradescope is not None:
        try:
            generate.write()               # the bundle's grader matches the current lab
            names = gradescope.build(args.gradescope)
        except (ValueError, OSError, generate.MarkerError) as err:
            print(f"release: {err}", file=sys.stderr)
            return 2
        print(f"{args.gradescope}: Gradescope autograder, {len(names)} files")
        if args.destination is None:
            return 0
    try:
        released, left_out = release(args.destination, args.force)
    except (ValueError, generate.MarkerError) as err:
        print(f"release: {err}", file=sys.stderr)
        return 2
    print(f"{args.destination}: {len(released)} files; grade with `pytest` there (default --impl lab)")
    if left_out:
        print(f"left out: the kit's own tests ({len(left_out)} files); only tests/grading/ ships")
    return 0


if __name__ == "__main__":
    sys.exit(main())
