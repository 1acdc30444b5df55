"""``python -m trace.view session.log``: replay a session as a sequence diagram.

    python -m trace.view session.log                 # diagram, then summary
    python -m trace.view client.log server.log       # one-sided logs, merged
    python -m trace.view --summary session.log       # tables only
    python -m trace.view --follow session.log        # like tail -f, while it runs
    python -m trace.view --step session.log          # one row per Enter (q quits)
    python -m trace.view --replay 0.5 session.log    # at half the recorded pace
    python -m trace.view --export talk.svg session.log
    python -m trace.view session.log --pcap capture.pcap   # with the TCP segments

This module is the command line only: it reads the logs (reporting bad
lines as ``FILE:LINE: what is wrong`` on stderr and carrying on), feeds the
events to :mod:`trace.model`, and prints what :mod:`trace.diagram` draws.
Everything streams, so a log of any length is shown in constant memory.
Exit status: 0 when something was shown, 2 when nothing usable was read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console

from . import reader
from .diagram import Painter, summary
from .model import KNOWN_EVENTS, Session
from .printable import has_unsafe, printable
from .reader import TraceError
from .selection import Selection

EXPORT_FORMATS = (".svg", ".html", ".txt")
FLUSH_AFTER_IDLE = 0.3      # a live log quiet this long: draw what is held back
MAX_REPLAY_PAUSE = 3.0      # --replay never waits longer than this between rows
PROBLEMS_SHOWN = 20         # per file; a log that is all garbage says so once


# --- command line ------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m trace.view",
        description="Show a traced session as a two-channel sequence diagram.")
    parser.add_argument("logs", nargs="*", metavar="LOG",
                        help="trace logs to merge ('-' for standard input)")
    parser.add_argument("--channel", choices=("control", "data"),
                        help="show only this channel")
    parser.add_argument("--conn", type=_connection_number, metavar="ID",
                        help="show only connection ID (the #N in the diagram)")
    parser.add_argument("--summary", action="store_true", help="show the summary only")
    parser.add_argument("--verbose", action="store_true",
                        help="one row per data segment instead of folding them")
    parser.add_argument("--follow", action="store_true",
                        help="keep reading as a live session writes the log")
    parser.add_argument("--follow-timeout", type=float, metavar="SECONDS",
                        help="with --follow: stop after this long without new lines")
    parser.add_argument("--step", action="store_true",
                        help="one row per Enter, q to quit (for teaching)")
    parser.add_argument("--replay", nargs="?", const="1", metavar="SPEED",
                        help="play back at the recorded pace, times SPEED (default 1)")
    parser.add_argument("--export", metavar="FILE",
                        help="also save the output as .svg, .html or .txt")
    parser.add_argument("--width", type=int, help="width in columns")
    parser.add_argument("--no-color", action="store_true", help="no colours")
    parser.add_argument("--json", action="store_true",
                        help="print the (filtered) events as JSON Lines instead")
    parser.add_argument("--pcap", metavar="CAPTURE",
                        help="instead of the diagram, the events with the captured TCP "
                             "segments under them (trace.segments)")
    args = parser.parse_args(argv)
    if args.replay is not None:
        # "--replay session.log": the optional SPEED was left out, and what
        # argparse took for it is a log.
        try:
            args.replay = float(args.replay)
        except ValueError:
            args.logs.insert(0, args.replay)
            args.replay = 1.0
    if not args.logs:
        parser.error("give at least one LOG ('-' for standard input)")
    if args.export and Path(args.export).suffix.lower() not in EXPORT_FORMATS:
        parser.error(f"--export: the file must end in {', '.join(EXPORT_FORMATS)}")
    if args.export:
        # Said now, not after the whole diagram has been drawn.
        problem = _export_problem(Path(args.export))
        if problem:
            parser.error(printable(f"--export: {args.export}: {problem}"))
    if args.follow and len(args.logs) > 1:
        parser.error("--follow takes one log")
    if args.pcap and (args.follow or args.step or args.replay is not None or args.json):
        parser.error("--pcap shows a finished log: not with --follow, --step, --replay or --json")
    if args.json and args.export:
        parser.error("--export saves the diagram and summary; --json prints events instead")
    if args.step and "-" in args.logs:
        parser.error("--step reads Enter from standard input, so the log must be a file")
    if args.replay is not None and args.replay <= 0:
        parser.error("--replay: SPEED must be more than 0")
    if args.width is not None and args.width < 40:
        parser.error("--width: at least 40 columns")
    return args


def _export_problem(path: Path) -> str | None:
    """Why the export could not be written there, or None."""
    folder = path.parent
    if not folder.exists():
        return f"no such folder {str(folder)!r}"
    if not folder.is_dir():
        return f"{str(folder)!r} is not a folder"
    if path.is_dir():
        return "is a folder"
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return "permission denied"
    return None


def _connection_number(text: str) -> int:
    try:
        return int(text.lstrip("#"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a connection number: {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as stop:             # argparse has printed its message
        return int(stop.code or 0)
    problems = Problems(sys.stderr)
    try:
        return View(args, problems).run()
    except TraceError as err:
        print(err, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`| head`): not an error of ours.
        # Point stdout at nothing so Python's exit flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        problems.close()


# --- reading the logs -----------------------------------------------------------------

class Problems:
    """Reports bad input as one line each, ``FILE:LINE: message``, on stderr."""

    def __init__(self, stream):
        self.stream = stream
        self.count: dict[str, int] = {}

    def __call__(self, problem: TraceError) -> None:
        n = self.count[problem.source] = self.count.get(problem.source, 0) + 1
        if n <= PROBLEMS_SHOWN:
            print(problem, file=self.stream, flush=True)

    def close(self) -> None:
        for source, n in self.count.items():
            if n > PROBLEMS_SHOWN:
                print(printable(f"{source}: {n - PROBLEMS_SHOWN} more problems not shown"),
                      file=self.stream)


def events_of(path: str, problems: Problems, *, follow=False, idle_limit=None, on_idle=None):
    """The events of one log in file order; its problems go to ``problems``.

    A log that cannot be read at all (missing, empty, binary) is reported
    and yields nothing, so the other logs can still be shown.
    """
    try:
        if follow and path != "-":     # a pipe streams anyway, and its end is final
            yield from reader.follow(path, problems, idle_limit=idle_limit, on_idle=on_idle)
        else:
            yield from reader.read_log(path, problems, on_cut_off=problems)
    except TraceError as err:
        problems(err)


def merged_events(paths, problems: Problems):
    """The events of several logs, merged in time order as ``trace.load`` does."""
    return reader.merge([events_of(path, problems) for path in paths])


# --- showing them ------------------------------------------------------------------------

class View:
    """One run of the viewer: reads the logs and shows them the way args say."""

    def __init__(self, args, problems: Problems):
        self.args = args
        self.problems = problems
        self.console = Console(width=args.width, no_color=args.no_color,
                               record=bool(args.export), highlight=False, emoji=False,
                               soft_wrap=False)
        self.session = Session(on_problem=problems,
                               segments=not (args.summary or args.json))
        self.painter: Painter | None = None
        self.selection = Selection(args.channel, args.conn)
        self.flushed_while_idle = False
        self.header_shown = False
        self.last_row_time: float | None = None

    def run(self) -> int:
        args = self.args
        if args.pcap:
            return self.run_with_capture()
        draw = not (args.summary or args.json)
        if draw:
            self.painter = Painter(self.console.width, None, verbose=args.verbose,
                                   channel=args.channel, conn=args.conn)
        try:
            for event in self.events():
                steps = self.session.feed(event)
                if args.json:
                    self.emit_json(event)
                elif draw:
                    for step in steps:
                        self.draw(self.painter.add(step))
        except KeyboardInterrupt:
            if not args.follow:            # Ctrl-C is how a --follow is ended
                raise
        except QuitStepping:
            return 0
        try:
            steps = self.session.finish()
            if draw:
                for step in steps:
                    self.draw(self.painter.add(step))
                self.draw(self.painter.finish())
                if self.header_shown:
                    self.console.print(self.painter.legend(), crop=True)
        except QuitStepping:
            return 0
        if self.session.events_used == 0:
            if not self.problems.count:    # otherwise the problems said why
                print(printable(f"{', '.join(args.logs)}: no trace events in the log"),
                      file=sys.stderr)
            return 2
        if not args.json:
            self.console.print(summary(self.session, channel=args.channel, conn=args.conn))
        self.export()
        return 0

    def run_with_capture(self) -> int:
        """--pcap: the trace beside the capture, as ``python -m trace.segments`` shows it.

        Joining the two needs the whole trace at once, so this mode does
        not stream; the diagram does.
        """
        from .correlate import CaptureFileError
        from .segments import render_with_segments
        events = []
        for event in self.events():
            self.session.feed(event)
            if not self.session.last_rejected:
                events.append(event)
        self.session.finish()
        if self.session.events_used == 0:
            return 2
        try:
            shown = render_with_segments(events, self.args.pcap)
        except CaptureFileError as err:
            print(err, file=sys.stderr)
            return 2
        self.console.print(shown)
        self.console.print(summary(self.session))
        self.export()
        return 0

    def events(self):
        args = self.args
        if args.follow:
            return events_of(args.logs[0], self.problems, follow=True,
                             idle_limit=args.follow_timeout, on_idle=self.idle)
        return merged_events(args.logs, self.problems)

    def idle(self, quiet: float) -> None:
        """A live log has gone quiet: draw what was held back for matching."""
        if quiet < FLUSH_AFTER_IDLE:
            self.flushed_while_idle = False
            return
        if self.flushed_while_idle or self.painter is None:
            return
        self.flushed_while_idle = True
        for step in self.session.flush():
            self.draw(self.painter.add(step))
        self.draw(self.painter.finish())

    def draw(self, rows) -> None:
        for t, row in rows:
            if not self.header_shown:      # not before we know there is something
                self.header_shown = True
                self.show(self.painter.header(), time_of_row=None)
            self.show(row, time_of_row=t)

    def show(self, row, time_of_row) -> None:
        args = self.args
        if args.replay is not None and time_of_row is not None:
            if self.last_row_time is not None:
                pause = (time_of_row - self.last_row_time) / args.replay
                time.sleep(min(max(pause, 0.0), MAX_REPLAY_PAUSE))
            self.last_row_time = time_of_row
        self.console.print(row, crop=True, overflow="crop")
        if args.step and time_of_row is not None:
            self.console.file.flush()
            print("[Enter: next, q: quit] ", end="", file=sys.stderr, flush=True)
            answer = sys.stdin.readline()
            if not answer or answer.strip().lower() == "q":
                raise QuitStepping

    def emit_json(self, event) -> None:
        # Events that were reported as bad are left out; unknown ones go through.
        unknown = event.get("type") not in KNOWN_EVENTS
        if (unknown or not self.session.last_rejected) and self.selection.event(event, self.session):
            line = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
            if has_unsafe(line):
                # JSON escapes C0 controls but not C1 ones, bidi overrides or
                # lone surrogates: those go out as \u escapes, which decode the same.
                line = json.dumps(event, separators=(",", ":"))
            sys.stdout.write(line + "\n")

    def export(self) -> None:
        path = self.args.export
        if not path:
            return
        suffix = Path(path).suffix.lower()
        try:
            if suffix == ".svg":
                self.console.save_svg(path, title="ftpkit session")
            elif suffix == ".html":
                self.console.save_html(path)
            else:
                self.console.save_text(path)
        except OSError as err:             # the folder went away while we drew
            raise TraceError(path, None, f"cannot export: {err.strerror or err}") from None


class QuitStepping(Exception):
    """The user typed q while stepping."""


if __name__ == "__main__":
    sys.exit(main())
