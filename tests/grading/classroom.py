"""GitHub Classroom's runner results, from the grader's results.json.

GitHub Classroom's reporter (classroom-resources/autograding-grading-reporter)
adds up, for each runner step, the ``score`` of every test in the step's
``result`` output (base64 of a JSON document) against its ``max_score``. The
stock command grader awards a step's points all or nothing; this writes the
grader's own per-test points instead, one runner per exercise:

    pytest tests/grading --impl lab --gradescope results.json
    python -m tests.grading.classroom results.json ex1 >> "$GITHUB_OUTPUT"

A missing or unreadable results.json gives a runner of 0 points with a
message saying so (the grading itself crashed), never an error.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

MESSAGE_CAP = 3000


def runner(document: dict, exercise: str) -> dict:
    tests = [t for t in document.get("tests", []) if exercise in t.get("tags", [])]
    return {
        "version": 1,
        "status": "pass" if tests and all(t.get("status") == "passed" for t in tests) else "fail",
        "max_score": round(sum(float(t.get("max_score", 0)) for t in tests), 3),
        "tests": [{
            "name": t.get("name", "?"),
            "status": "pass" if t.get("status") == "passed" else "fail",
            "score": float(t.get("score", 0)),
            "message": "" if t.get("status") == "passed" else str(t.get("output", ""))[:MESSAGE_CAP],
            "line_no": 0,
            "execution_time": f"{t.get('extra_data', {}).get('duration', 0)}s",
        } for t in tests],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.grading.classroom results.json EXERCISE", file=sys.stderr)
        return 2
    path, exercise = Path(argv[0]), argv[1]
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        document = {"tests": []}
        print(f"{path}: no usable results ({type(err).__name__}): {exercise} scores 0", file=sys.stderr)
    result = runner(document, exercise)
    print("result=" + base64.b64encode(json.dumps(result).encode("utf-8")).decode("ascii"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
