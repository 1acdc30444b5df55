"""How fast a class is graded: submissions per minute on this machine.

    python bench/bench_grading.py            # the 18 planted bugs, the starter and the solutions
    python bench/bench_grading.py --quick    # 4 bugs, the starter and the solutions
    python bench/bench_grading.py --jobs 2

It grades a class made of the planted-bug submissions (tests/grading/bugs/
bugs.toml applied to the solutions, each as a student's lab/), the untouched
starter and the solutions, with the batch grader (`python -m
tests.grading.batch`, every exercise, `--jobs` at a time), and prints:

- submissions per minute, with isolation on (the grader's default: as root,
  student code runs sandboxed) and off (`--isolation off`), side by side in
  one run, and their ratio;
- the time of one full-marks grading (the solutions alone, one job);
- submissions per minute for a class of finished labs (``--finished N``
  copies of the solutions), the fast case beside the planted bugs' slow one.

The goal: a class of 300 in at most 15 minutes on 2 cores, that is 20
submissions a minute or better. The machine is shared and noisy: the figures
are for comparing, not for asserting.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from solutions import generate  # noqa: E402
from tests.grading import batch  # noqa: E402

BUGS = REPO_ROOT / "tests" / "grading" / "bugs" / "bugs.toml"
EVERY_EXERCISE = frozenset(f"ex{n}" for n in range(1, 7))


def make_class(folder: Path, bug_count: int | None) -> int:
    """Submissions: each planted bug, the starter, the solutions. Returns how many."""
    bugs = tomllib.loads(BUGS.read_text(encoding="utf-8"))["bug"][:bug_count]
    for bug in bugs:
        lab = folder / f"bug_{bug['name']}" / "lab"
        generate.write(generate.SOLUTIONS, lab, "lab", EVERY_EXERCISE)
        # As tests/test_lab_meta.py applies it: to the solutions' module, package renamed.
        source = re.sub(r"\bsolutions\b", "lab", (generate.SOLUTIONS / bug["file"]).read_text(encoding="utf-8"))
        (lab / bug["file"]).write_text(source.replace(bug["old"], bug["new"], 1), encoding="utf-8")
    starter = folder / "starter" / "lab"
    generate.write(generate.SOLUTIONS, starter, "lab")
    generate.write(generate.SOLUTIONS, folder / "solutions" / "lab", "lab", EVERY_EXERCISE)
    return len(bugs) + 2


def isolation_option_exists() -> bool:
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/grading", "--help", "-p", "no:cacheprovider"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    return "--isolation" in done.stdout


def grade(folder: Path, jobs: int, isolation: str | None) -> tuple[float, list]:
    with tempfile.TemporaryDirectory(prefix="ftpkit-bench-") as scratch:
        started = time.monotonic()
        grades = batch.grade_class(folder, Path(scratch, "gradebook.csv"), None, jobs, batch.DEFAULT_TIMEOUT,
                                   progress=False, isolation=isolation)
        return time.monotonic() - started, grades


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_grading.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 bugs instead of all")
    parser.add_argument("--jobs", type=int, default=batch.DEFAULT_JOBS,
                        help="gradings at a time (default: the batch grader's, 2 x cores)")
    parser.add_argument("--finished", type=int, default=12, metavar="N",
                        help="also grade a class of N finished labs (the solutions), isolation on (0: skip)")
    args = parser.parse_args(argv)
    root = os.geteuid() == 0
    has_option = isolation_option_exists()
    print(f"machine: {os.cpu_count()} cores, {'root' if root else 'not root (isolation is weaker)'}; "
          f"jobs {args.jobs}; grader option --isolation: {'yes' if has_option else 'absent'}")
    with tempfile.TemporaryDirectory(prefix="ftpkit-bench-class-") as tmp:
        folder = Path(tmp, "class")
        count = make_class(folder, 4 if args.quick else None)
        single = Path(tmp, "one")
        generate.write(generate.SOLUTIONS, single / "solutions" / "lab", "lab", EVERY_EXERCISE)

        runs = [("isolation on", "auto" if has_option else None)]
        if has_option:
            runs.append(("isolation off", "off"))
        finished = Path(tmp, "finished")
        for n in range(args.finished):
            generate.write(generate.SOLUTIONS, finished / f"student{n:02d}" / "lab", "lab", EVERY_EXERCISE)
        finished_seconds = grade(finished, args.jobs, runs[0][1])[0] if args.finished else None

        rows = []
        for label, isolation in runs:
            seconds, grades = grade(folder, args.jobs, isolation)
            one, one_grades = grade(single, 1, isolation)
            full = one_grades[0]
            problems = [g for g in grades if g.status != "graded"]
            rows.append((label, seconds, count / seconds * 60, one, full.total, problems, grades))
    print(f"\n{'':<15} {'class of ' + str(count):>14} {'per minute':>11} {'one full-marks':>15}")
    for label, seconds, per_minute, one, total, problems, _ in rows:
        print(f"{label:<15} {seconds:>12.1f} s {per_minute:>11.1f} {one:>13.1f} s"
              + (f"   ({len(problems)} not graded: {', '.join(g.student for g in problems)})" if problems else ""))
    slowest = sorted(rows[0][6], key=lambda g: -g.seconds)[:5]
    print("slowest with isolation on: " + ", ".join(f"{g.student} {g.seconds:.0f} s" for g in slowest))
    if len(rows) == 2:
        print(f"isolation costs {rows[0][1] / rows[1][1]:.2f}x the time without it (goal: at most 1.2x)")
    else:
        print("isolation off: not measured (the grader has no --isolation option)")
    best = rows[0][2]
    print(f"a class of 300 at {best:.1f} a minute: {300 / best:.0f} minutes (goal: 15, i.e. 20 a minute)")
    if finished_seconds:
        rate = args.finished / finished_seconds * 60
        print(f"a class of {args.finished} finished labs, isolation on: {finished_seconds:.1f} s, {rate:.1f} a minute "
              f"(300 in {300 / rate:.0f} minutes): the planted bugs above are the slow case: each hung test "
              "still costs the 0.3 s in which nothing runs, or the 0.6 s of CPU a spinning loop burns, "
              "before the grader calls it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
