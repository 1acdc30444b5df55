"""What the notebooks share: run a live session, show its events and segments,
and check a student's answers against what the trace and capture say.

Each notebook's first cell puts the repository root first on ``sys.path``
(so ``import trace`` finds the kit, not the standard library's ``trace``),
then imports this module.
"""

from __future__ import annotations

import atexit
import os
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
from trace.reference import (SCENARIOS, drive_failures, failed_replies, live_or_recorded,  # noqa: E402
                             run_scenario, scenario_for)

WORKDIR_PREFIX = "ftpkit-notebook-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # someone else's process: alive
        return True
    return True


def _remove_leftovers(directory=None) -> None:
    """Remove the work folders of notebook kernels that are gone (killed
    before they could clean up): their names carry the kernel's pid."""
    for folder in Path(directory or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        pid = folder.name[len(WORKDIR_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)


def _make_workdir() -> Path:
    """A folder for this kernel's logs and captures, removed when it exits."""
    _remove_leftovers()
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    return workdir


# Every notebook writes its logs and captures here, never into the
# repository; a session's files are megabytes, so they go when the kernel does.
WORKDIR = _make_workdir()

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
                      run=lambda log: run_session(log, script, active=active, workdir=WORKDIR,
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


def scenario_session(name: str, run=None) -> tuple[Path, bool]:
    """Run the recorded scenario ``name`` live with this kit's implementation
    (``run(log)``, or the scenario's own run); in a release whose lab/ cannot
    run it yet, show the recorded reference instead (said in one line).
    Returns the log shown and whether it is this live one."""
    log = WORKDIR / f"{name}.log"
    run = run or (lambda log: run_scenario(SCENARIOS[name], log, workdir=WORKDIR))
    if IMPLEMENTATION != "lab":
        run(log)
        return log, True
    shown, _ = live_or_recorded(name, lambda: run(log), log)
    return shown, shown == log


def concurrent_session() -> Path:
    """The concurrency scenario: one server, four clients at once, each a
    put, a get and an ls, all tracing into one log. Returns the log."""
    clients = SCENARIOS["concurrency"].clients
    log, live = scenario_session("concurrency")
    if live:
        print(f"Live session on loopback: one server and {clients} clients, {clients + 1} processes "
              "tracing into one log.")
    return log


def error_replies() -> tuple[Path, list[tuple[str, int, str]]]:
    """The failures scenario: this kernel drives the client library against a
    server that drops every data connection after 100,000 bytes. Returns the
    log and (command, code, reply line) for each 4xx and 5xx reply."""
    download = WORKDIR / "photo.bin"
    log, live = scenario_session("failures", lambda log: drive_failures(log, download_to=download,
                                                                        workdir=WORKDIR))
    if live:
        # Interrupted downloads are kept under a temporary name, never the real one.
        print("partial download left under the real name?", download.exists())
    return log, failed_replies(log)


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
                    client_files={"notes.txt": NOTES}, workdir=WORKDIR, **options)
        time.sleep(0.3)          # let the last segments reach the file
    finally:
        dump.terminate()
        dump.wait(timeout=10)
    return log, pcap


def network_session(name: str, size: int = 512 << 10, **options):
    """A get across the namespaces of ``trace.netns`` in scenario ``name``
    (``clean``, ``lossy``, ``slow``, ``nat``; ``options``: ``loss``,
    ``loss_direction``, ``rate``), traced and captured on the cable; or,
    where this kernel may not build namespaces, the kit's recorded sample of
    that scenario (said plainly). Returns ``(log, pcap)``."""
    from trace import netns, netsession
    scenario = netns.scenario(name, **options)
    log, pcap, _live = netsession.record_or_sample(WORKDIR, scenario, size, say=print)
    return log, pcap


def network_table(runs: dict) -> Table:
    """One row per scenario: ``runs`` maps a name to its ``(log, pcap)``."""
    from trace import netsession
    table = Table(title="The same get over three links")
    for column in ("link", "bytes", "seconds", "Mbit/s", "client's verdict",
                   "segments", "sent again", "trace bytes in capture"):
        table.add_column(column)
    for name, (log, pcap) in runs.items():
        m = netsession.measure(log, pcap)
        get = m.transfers[0]
        table.add_row(name, str(get.bytes), f"{get.seconds:.3f}",
                      f"{8 * get.bytes / get.seconds / 1e6:.1f}" if get.seconds else "-",
                      get.verdict, str(m.segments), str(m.retransmitted), f"{100 * m.trace_coverage:.1f}%")
    return table


def nat_picture(pcap, ax=None):
    """Who opened connections to whom, behind NAT, from the capture on the
    router-server cable: one arrow per SYN, down the page in time order.
    A SYN towards the client's private address ends at the router, crossed out."""
    import matplotlib.pyplot as plt
    from trace import netns
    from trace.correlate import read_segments

    lanes = {"client": 0, "router": 1, "server": 2}
    names = {0: f"client\n{netns.CLIENT_ADDRESS}\n(home network)",
             1: f"router\n{netns.ROUTER_INSIDE} | {netns.ROUTER_OUTSIDE}\n(masquerades)",
             2: f"server\n{netns.SERVER_ADDRESS}"}
    syns = [s for s in read_segments(pcap) if s.flags & 0x02 and not s.flags & 0x10]
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 2 + 0.6 * len(syns)))
    for x, label in names.items():
        ax.axvline(x, color="grey", linewidth=1)
        ax.text(x, -1.4, label, ha="center", va="top", fontsize=9,
                bbox=dict(facecolor="white", edgecolor="none"))
    for row, syn in enumerate(syns, start=1):
        if syn.dst == netns.SERVER_ADDRESS:
            # From inside, through the router: the server sees the router's address.
            ax.annotate("", xy=(lanes["server"], row), xytext=(lanes["client"], row),
                        arrowprops=dict(arrowstyle="->", color="tab:blue"))
            ax.text(1.5, row - 0.15, f"SYN from {syn.source} (the client, translated) to :{syn.dport}",
                    ha="center", fontsize=8, bbox=dict(facecolor="white", edgecolor="none", pad=1))
        else:
            ax.annotate("", xy=(lanes["router"], row), xytext=(lanes["server"], row),
                        arrowprops=dict(arrowstyle="->", color="tab:red"))
            ax.plot(lanes["router"], row, marker="x", markersize=14, color="tab:red")
            ax.text(1.5, row - 0.15, f"SYN from the server to {syn.destination}: no way in",
                    ha="center", fontsize=8, color="tab:red",
                    bbox=dict(facecolor="white", edgecolor="none", pad=1))
    ax.set_ylim(len(syns) + 0.5, -1.5)
    ax.set_xlim(-0.5, 2.5)
    ax.axis("off")
    ax.set_title("Connections opened, as the capture on the router-server cable shows them")
    return ax.figure


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
