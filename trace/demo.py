"""The kit's main job: record a demo session and show it.

    python -m trace.demo                 # writes session.log, then shows it
    python -m trace.demo --log my.log --no-show

It starts the reference server on a free loopback port with a temporary
root, runs a scripted client session against it (ls, put, get, a get of a
missing file, a get in active mode, quit), both programs appending to the
same trace log, and then shows the log.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The demo depends on recording, never the other way round: the script and
# its files live in demo_script, which both use.
from .demo_script import SCRIPT, demo_files, record_session  # noqa: F401 (the demo's names)
from .record import capturing


def show(log: Path) -> None:
    """Show the log with the viewer, or plainly if the viewer is missing."""
    try:
        from . import view
    except ImportError:
        from .reader import load
        for event in load(log):
            print({k: v for k, v in event.items() if k not in ("pid", "seq")})
        return
    view.main([str(log)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trace.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", default="session.log", help="trace log to write (default session.log)")
    parser.add_argument("--no-show", action="store_true", help="record only; do not show the log")
    parser.add_argument("--capture", metavar="PCAP",
                        help="also capture the packets, when this machine may "
                             "(default: capture.pcap beside the log)")
    parser.add_argument("--no-capture", action="store_true", help="record the trace alone")
    args = parser.parse_args(argv)
    log = Path(args.log)
    pcap = Path(args.capture) if args.capture else log.with_name("capture.pcap")
    if log.exists():
        log.unlink()        # a fresh log, not appended to an old session
    capture = session = None

    def run() -> None:
        nonlocal capture, session
        if args.no_capture:
            session, capture = record_session(log), None
        else:
            with capturing(pcap, log=log) as capture:
                session = record_session(log)
        print(session.client_output, end="")
        print(f"\ntrace written to {log} (server port {session.server_port})")
        if capture is not None:
            print(capture.summary())
            print(f"view both: python -m trace.view {log} --pcap {pcap}")
        print()

    from .record import IMPLEMENTATION
    if IMPLEMENTATION == "solutions":
        run()
        shown = log
    else:
        # A student release: the student's lab/ if it runs this session as
        # the reference does, else the recorded reference (said in one line).
        from .reference import live_or_recorded
        shown, _ = live_or_recorded("demo", run, log, pcap)
        if shown != log:
            print()
    if not args.no_show:
        show(shown)
    # The script includes one deliberate error (the missing file), so the
    # client's own exit status is 1; the demo worked if the session ran to
    # the server's goodbye.
    return 0 if shown != log or "221 Goodbye." in session.client_output else 1


if __name__ == "__main__":
    sys.exit(main())
