"""Student releases for the kit's tests: fresh, with the starter or solved.

A *solved* release is a release whose ``lab/`` holds the reference code
(every solution region kept, the package named ``lab``): a student who did
every exercise.
"""

from __future__ import annotations

from pathlib import Path

from solutions import generate, release

EVERY_EXERCISE = frozenset(f"ex{n}" for n in range(1, 7))


def make_release(directory: Path, solved: bool = False) -> Path:
    """Write a fresh release into ``directory`` (which must not exist or be empty)."""
    release.release(directory)
    if solved:
        solve(directory / "lab")
    return directory


def solve(lab: Path) -> Path:
    """Replace the lab's modules with the reference's (its handout stays)."""
    generate.write(generate.SOLUTIONS, lab, lab.name, EVERY_EXERCISE)
    return lab
