"""Which functions of the lab the student writes: those with a solution region.

A failure's ``at:`` line names the deepest frame of the traceback that is in
one of these functions (student-written code), not the given code around it.
In the kit the list is read off solutions/ (``generate.find_regions``); a
student release has no solutions/, so the list is also kept in
``regions.json`` beside this file (``python -m tests.grading.regions``
rewrites it; tests/test_lab_meta.py fails when it drifts).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAVED = HERE / "regions.json"


def from_solutions() -> dict[str, list[str]]:
    from solutions import generate
    out: dict[str, list[str]] = {}
    for path in generate.solution_modules():
        for region in generate.find_regions(path.name, path.read_text(encoding="utf-8")):
            names = out.setdefault(path.name, [])
            if region.function not in names:
                names.append(region.function)
    return out


@lru_cache(maxsize=1)
def student_functions() -> frozenset[tuple[str, str]]:
    """(module file name, function's qualified name) of every function with a solution region."""
    try:
        table = from_solutions()
    except ImportError:
        table = json.loads(SAVED.read_text(encoding="utf-8"))
    return frozenset((module, function) for module, functions in table.items() for function in functions)


def is_student_written(frame: dict) -> bool:
    """Whether a traceback frame from the driver ({"file": "lab/x.py", "function": ...}) is student-written."""
    return (Path(frame.get("file", "")).name, frame.get("function", "")) in student_functions()


if __name__ == "__main__":
    SAVED.write_text(json.dumps(from_solutions(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {SAVED}")
