"""What the notebooks share: run a live session, show its events and segments,
and check a student's answers against what the trace and capture say.

Each notebook's first cell puts the repository root first on ``sys.path``
(so ``import trace`` finds the kit, not the standard library's ``trace``),
then imports this module.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path[0] != str(ROOT):
    sys.path.insert(0, str(ROOT))

from rich.table import Table  # noqa: E402

import trace  # noqa: E402
from trace import model  # noqa: E402
from trace.capture import why_not  # noqa: E402
from trace.record import IMPLEMENTATION, SAMPLE_LOG, SAMPLE_PCAP, record, run_session  # noqa: E402
from trace.reference import live_or_recorded, scenario_for  # noqa: E402

# Every notebook writes its logs and captures here, never into the repository.
WORKDIR = Path(tempfile.mkdtemp(prefix="ftpkit-notebook-"))

# Files the sessions move: a text file on the client, a binary file on the server.
NOTES = ("Two channels: commands and replies on one connection,\n"
         "every file on a connection of its own.\n" * 40).encode()
PHOTO_SIZE = 256 * 1024


def live_session(name: str, script: list[str], *, server_files=None, client_files=None,
                 server_args=(), active: bool = False, capture: bool = True):
    """Run the reference server and client on loopback (two processes, one
    trace log) and capture the packets if this kernel may.

    Returns ``(log, pcap)``; ``pcap`` is None when nothing was captured.
    Says plainly which it was.
    """
    log, pcap = WORKDIR / f"{name}.log", WORKDIR / f"{name}.pcap"
    files = dict(server_files=server_files or {"photo.bin": PHOTO_SIZE},
                 client_files=client_files or {"notes.txt": NOTES})
    def run():
        return record(log, pcap if capture else None, say=None,
                      run=lambda log: run_session(log, script, active=active,
                                                  server_args=server_args, **files))
    # In a student release: the student's lab/ where it runs this session as
    # the reference does, else the recorded reference session (said in one line).
    scenario = scenario_for(script, server_args)
    if IMPLEMENTATION == "lab" and scenario is not None and not active:
        return live_or_recorded(scenario.name, run, log, pcap if capture else None)
    recording = run()
    if recording.capture is not None:
        print(f"Live session on loopback, traced and captured: {log.name}, {pcap.name} "
              f"({recording.capture.kept} segments).")
        return log, pcap
    reason = why_not() if capture else "not asked for"
    print(f"Live session on loopback, traced; no packet capture ({reason}).")
    return log, None


def session_with_packets(name: str, script: list[str], **options):
    """A live session with its capture, or, where this kernel may not
    capture, the kit's recorded sample (said plainly). Returns ``(log, pcap)``."""
    log, pcap = live_session(name, script, **options)
    if pcap is None:
        print(f"Using the recorded sample instead: trace/samples/{SAMPLE_LOG.name} and "
              f"trace/samples/{SAMPLE_PCAP.name} (the demo session: ls, put, get, a missing "
              "file, a get in active mode).")
        return SAMPLE_LOG, SAMPLE_PCAP
    return log, pcap


def tcpdump_capture(log_name: str, script: list[str], **options):
    """Record a session while *tcpdump* (not the kit) captures it, as a student
    would on their own machine. Returns ``(log, pcap)`` or None if tcpdump or
    the privilege to run it is missing."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None or why_not() is not None:
        return None
    log, pcap = WORKDIR / f"{log_name}.log", WORKDIR / f"{log_name}.pcap"
    # -B: a big kernel buffer and --immediate-mode, or a fast loopback
    # transfer outruns tcpdump and segments go missing from the file.
    dump = subprocess.Popen([tcpdump, "-i", "lo", "-s", "0", "-B", "131072", "--immediate-mode",
                             "-U", "-w", str(pcap), "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    while "listening on" not in (dump.stderr.readline() or "") and time.monotonic() - started < 10:
        pass
    try:
        run_session(log, script, server_files={"photo.bin": PHOTO_SIZE},
                    client_files={"notes.txt": NOTES}, **options)
        time.sleep(0.3)          # let the last segments reach the file
    finally:
        dump.terminate()
        dump.wait(timeout=10)
    return log, pcap


# --- tables ----------------------------------------------------------------

def events_table(events, types=("connect", "accept", "command", "reply", "close"),
                 limit: int = 60) -> Table:
    """The chosen events of a session, one row each, times from its start."""
    table = Table(title="Trace events", show_lines=False)
    for column in ("t (ms)", "side", "event", "channel", "conn", "what"):
        table.add_column(column)
    start = None
    shown = 0
    for event in events:
        start = event["t"] if start is None else start
        if event["type"] not in types or shown >= limit:
            continue
        shown += 1
        what = event.get("text") or event.get("remote") or ""
        if event["type"] == "close" and "sent" in event:
            what = f"sent {event['sent']} B, received {event['received']} B"
        table.add_row(f"{(event['t'] - start) * 1000:8.2f}", event["role"], event["type"],
                      event.get("channel", ""), str(event.get("conn", "")), what.replace("\n", " ⏎ "))
    return table


def segments_table(connection, events, limit: int = 40) -> Table:
    """The TCP segments of one correlated connection, Wireshark style.

    ``events`` (the session's trace) name the program behind each end, since
    the end that sends the SYN is the FTP client in passive mode but the FTP
    server in active mode."""
    opener = syn_sender(events, connection)
    other = {"client": "server", "server": "client"}.get(opener, "?")
    table = Table(title=f"Segments of {connection.name} (opened by the {opener})")
    for column in ("#", "t (ms)", "from", "flags", "seq", "ack", "len", "phase"):
        table.add_column(column)
    start = connection.segments[0].t if connection.segments else 0
    for segment in connection.segments[:limit]:
        table.add_row(str(segment.number), f"{(segment.t - start) * 1000:7.3f}",
                      opener if segment.direction == 0 else other,
                      segment.flag_text, str(segment.rel_seq), str(segment.rel_ack),
                      str(segment.len), segment.phase or "")
    if len(connection.segments) > limit:
        table.caption = f"... and {len(connection.segments) - limit} more segments"
    return table


def session_model(log):
    """The viewer's model of a session: connections, transfers, errors."""
    session, _ = model.build(trace.load(log))
    return session


# --- questions ---------------------------------------------------------------

def check(answer, expected, *, hint: str = "") -> bool | None:
    """Compare a student's answer with the value the data gives.

    ``...`` (the placeholder) means "not answered yet". Text is compared
    without case or surrounding space; numbers exactly.
    """
    if answer is ...:
        print("✎ Not answered yet: replace ... with your answer and run this cell again.")
        return None
    if _normal(answer) == _normal(expected):
        print("✓ Right.")
        return True
    print(f"✗ Not quite.{' Hint: ' + hint if hint else ''}")
    return False


def _normal(value):
    if isinstance(value, str):
        return value.strip().lower()
    if isinstance(value, (list, tuple, set, frozenset)):
        return sorted(_normal(v) for v in value)
    return value


def syn_sender(events, connection) -> str:
    """Which program sent a captured connection's SYN: the one whose trace
    shows a ``connect`` from the SYN's source address ("client" or "server")."""
    from trace.correlate import join_address
    source = join_address(*connection.client)
    for event in events:
        if event["type"] == "connect" and event.get("local") == source:
            return event["role"]
    return "?"
