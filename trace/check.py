"""``python -m trace.schema LOG...``: check logs against the schema.

Each problem is one line, ``FILE:LINE: what is wrong``; the exit status is
0 when every event is valid, 1 when some are not, 2 when a log cannot be
read at all. The checks are :mod:`trace.validate`'s.
"""

from __future__ import annotations

import argparse
import sys

from .printable import printable
from .reader import TraceError, read_log
from .validate import header_problem, problems


def main(argv: list[str] | None = None, prog: str = "python -m trace.check") -> int:
    """Check logs against the schema; each problem is one line ``FILE:LINE: what``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Check trace logs against the schema (trace/SCHEMA.md).")
    parser.add_argument("logs", nargs="+", metavar="LOG")
    bad = 0

    def report(problem: TraceError) -> None:
        nonlocal bad
        bad += 1
        print(problem)

    for path in parser.parse_args(argv).logs:
        count = 0
        try:
            for event in read_log(path, report, on_cut_off=report):
                count += 1
                for problem in problems(event):
                    if event["type"] == "header" and problem == header_problem(event):
                        continue            # the reader has reported it
                    report(TraceError(event.source, event.lineno, problem))
        except TraceError as err:
            print(err, file=sys.stderr)
            return 2
        print(printable(f"{path}: {count} events, {'ok' if not bad else f'{bad} problems'}"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
