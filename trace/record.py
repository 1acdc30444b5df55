"""Record a session's trace together with a packet capture of it.

    python -m trace.record session.log                        # + capture.pcap beside it
    python -m trace.record --capture capture.pcap session.log
    python -m trace.record --no-capture session.log           # the trace alone
    python -m trace.record --net lossy --loss 5% session.log  # across network namespaces (root)

It runs the scripted demo session (``trace.demo``: the reference server and
client as two processes, both tracing into the log) while :mod:`trace.capture`
sniffs the loopback interface, then checks the capture against the trace
(:func:`trace.correlate.correlate`) and prints the coverage. Capturing needs
root or CAP_NET_RAW; without them it says so in one line and records the
trace alone.

With ``--net SCENARIO`` (clean, lossy, slow, nat) the session is a get
between client, router and server namespaces instead, captured on the
router-server cable (:mod:`trace.netns`, :mod:`trace.netsession`).
``--annotate OUT.pcapng`` also writes the capture with the trace's words on
every frame, where :mod:`trace.annotate` exists.

:func:`run_session` runs any script with any files (the tests and the
benchmark use it); :func:`record` wraps a session in a capture.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .capture import Capture, CaptureError, why_not
from .demo_script import record_session
# The launcher's names, kept here for the callers that import them from
# trace.record (tests, benchmarks, notebooks).
from .launch import (IMPLEMENTATION, REPO_ROOT, Session, content_of,  # noqa: F401
                     put_files, run_client, run_session, serving)

# The kit's recorded sample, and the command that regenerates it.
SAMPLE_LOG = REPO_ROOT / "trace" / "samples" / "session.log"
SAMPLE_PCAP = REPO_ROOT / "trace" / "samples" / "capture.pcap"
SAMPLE_COMMAND = "python -m trace.record --capture trace/samples/capture.pcap trace/samples/session.log"


@dataclass
class Recording:
    session: Session
    capture: Capture | None        # None: no capture was made
    reason: str | None             # why not, in one line


@contextmanager
def capturing(path, control_port=None, *, log=None,
              say: Callable[[str], None] | None = print):
    """Capture while the body runs, if this process can; yields the
    :class:`~trace.capture.Capture` or ``None`` (after saying why, in one
    line, through ``say``). Give the session's trace ``log`` (or its
    ``control_port``) so that only that session is kept: the control port
    is read from the log's ``listen`` event as the server starts.
    """
    reason = why_not()
    cap = None
    if reason is None:
        try:
            cap = Capture(path, control_port, log=log).start()
        except CaptureError as err:
            reason = str(err)
    if reason and say:
        say(f"no capture: {reason}; recording the trace alone")
    try:
        yield cap
    finally:
        if cap is not None:
            cap.stop()


def record(log, capture_path=None, run: Callable[[Path], Session] | None = None,
           say: Callable[[str], None] | None = print) -> Recording:
    """Record a session into a fresh ``log`` while capturing it into
    ``capture_path`` (``None``: no capture). ``run(log)`` runs the session;
    by default the scripted demo session."""
    log = Path(log)
    if log.exists():
        log.unlink()
    if run is None:
        run = record_session
    if capture_path is None:
        return Recording(run(log), None, "not asked for")
    with capturing(capture_path, log=log, say=say) as cap:
        session = run(log)
    return Recording(session, cap, None if cap else why_not())


def record_or_sample(directory, say: Callable[[str], None] | None = print) -> tuple[Path, Path]:
    """For notebooks and docs: record the demo session with its capture into
    ``directory`` (``session.log``, ``capture.pcap``) if this machine can
    capture, else say why in one line and return the kit's sample."""
    reason = why_not()
    if reason is None:
        log, pcap = Path(directory, "session.log"), Path(directory, "capture.pcap")
        rec = record(log, pcap, say=say)
        if rec.capture is not None:
            return log, pcap
    if say:
        say(f"no capture here ({reason}); using the recorded sample {SAMPLE_LOG.name} + "
            f"{SAMPLE_PCAP.name} from trace/samples/")
    return SAMPLE_LOG, SAMPLE_PCAP


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trace.record",
        description="Record the scripted demo session: its trace and a packet capture of it.")
    parser.add_argument("log", nargs="?", default="session.log",
                        help="trace log to write (default session.log)")
    parser.add_argument("--capture", metavar="PCAP",
                        help="capture file to write (default: capture.pcap beside the log)")
    parser.add_argument("--no-capture", action="store_true", help="record the trace alone")
    parser.add_argument("--annotate", metavar="PCAPNG",
                        help="also write the capture as pcapng with the trace's words on every "
                             "frame, for Wireshark (frame.comment)")
    net = parser.add_argument_group(
        "a get across network namespaces (root; see trace/netns.py)",
        "client, router and server each in a namespace of their own, captured on the "
        "router-server cable. No scenario adds delay: this kernel has no netem.")
    net.add_argument("--net", metavar="SCENARIO", choices=SCENARIO_NAMES,
                     help=f"one of {', '.join(SCENARIO_NAMES)}")
    net.add_argument("--loss", metavar="PERCENT", help="lossy: the share of TCP packets dropped (default 5%%)")
    net.add_argument("--loss-direction", default="both", choices=("both", "to-server", "to-client"),
                     help="lossy: which way packets are lost (default both)")
    net.add_argument("--rate", metavar="RATE", help="slow: the link's rate, as tc writes it (default 20mbit)")
    net.add_argument("--size", default="1MiB", help="size of the file to get (default 1MiB)")
    args = parser.parse_args(argv)
    log = Path(args.log)
    pcap = None if args.no_capture else Path(args.capture or log.with_name("capture.pcap"))
    _keep_the_old(log)
    if args.net:
        return _main_net(parser, args, log, pcap)
    rec = record(log, pcap)
    status = 0 if "221" in rec.session.client_output else 1
    print(f"trace written to {log} (server port {rec.session.server_port})")
    if rec.capture is not None:
        print(rec.capture.summary())
        from .correlate import correlate
        from .reader import load
        result = correlate(load(log), pcap)
        print(result.summary())
        if args.annotate:
            _annotate(log, pcap, Path(args.annotate))
    return status


def _keep_the_old(log: Path) -> None:
    """A new recording never silently replaces an older log: the older one
    moves aside to ``NAME.old`` (one of them, the newest), and a line says so."""
    if log.is_file():
        old = log.with_name(log.name + ".old")
        os.replace(log, old)
        print(f"{log} existed: kept it as {old}")


def _annotate(log: Path, pcap: Path, out: Path) -> None:
    from .netsession import annotate
    why_not_written = annotate(log, pcap, out)
    print(f"annotated capture written to {out}" if why_not_written is None
          else f"no annotated capture: {why_not_written}")


SCENARIO_NAMES = ("clean", "lossy", "slow", "nat")


def _main_net(parser, args, log: Path, pcap: Path | None) -> int:
    from . import netns, netsession
    try:
        loss = netns.parse_loss(args.loss) if args.loss else None
        scenario = netns.scenario(args.net, loss, args.loss_direction, args.rate)
        size = netsession.parse_size(args.size)
    except ValueError as err:
        parser.error(str(err))
    reason = netns.why_not()
    if reason:
        sample_log, sample_pcap = netsession.sample_paths(scenario.name)
        print(f"no network namespaces here ({reason}); the recorded sample stands in: "
              f"python -m trace.view {sample_log.relative_to(REPO_ROOT)} "
              f"--pcap {sample_pcap.relative_to(REPO_ROOT)}")
        return 0
    pcap = pcap or log.with_name("capture.pcap")     # the wire is the point: always captured
    try:
        rec = netsession.record_in_network(log, pcap, scenario, size)
    except netns.NetworkError as err:
        print(f"trace.record: cannot build the network: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trace.record: interrupted; the namespaces are removed", file=sys.stderr)
        return 130
    print(rec.session.client_output, end="")
    print(f"\ntrace written to {log}, capture to {pcap}")
    print(netsession.report(rec, netsession.measure(log, pcap)))
    if args.annotate:
        _annotate(log, pcap, Path(args.annotate))
    print(f"view both: python -m trace.view {log} --pcap {pcap}")
    return 0 if "221" in rec.session.client_output else 1


if __name__ == "__main__":
    sys.exit(main())
