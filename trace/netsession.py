"""Record a session across the namespaces of :mod:`trace.netns`, and measure
what the network did to it.

    python -m trace.record --net lossy --loss 5% session.log    # see trace.record

The session is one get of ``data.bin`` (in the ``nat`` scenario, a get in
passive mode, then the same get in active mode). :func:`measure` reads the
trace and the capture: how long each transfer took, whether the bytes
arrived intact, how many segments the wire carried twice, and how much of
each side the other accounts for (:func:`trace.correlate.correlate`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import netns
from .launch import IMPLEMENTATION, REPO_ROOT, Session, run_session

NET_FILE = "data.bin"
NET_FILE_ACTIVE = "data-active.bin"
DEFAULT_SIZE = 1 << 20
SAMPLES = REPO_ROOT / "trace" / "samples"


def net_script(scenario: netns.Scenario) -> list[str]:
    """What the client types: a get; behind NAT, then the same in active mode."""
    script = [f"get {NET_FILE}"]
    if scenario.nat:
        script += ["passive", f"get {NET_FILE} {NET_FILE_ACTIVE}"]
    return script + ["quit"]


def sample_paths(name: str) -> tuple[Path, Path]:
    """The shipped recording of scenario ``name``: (trace, capture)."""
    return SAMPLES / name / "session.log", SAMPLES / name / "capture.pcap"


def sample_command(name: str) -> str:
    """The command that regenerates the sample of scenario ``name``."""
    return (f"python -m trace.record --net {name} --size 512KiB "
            f"--capture trace/samples/{name}/capture.pcap "
            f"--annotate trace/samples/{name}/annotated.pcapng trace/samples/{name}/session.log")


def annotate(log, pcap, out) -> str | None:
    """Write ``pcap`` again as pcapng with the trace's words on every frame
    (:mod:`trace.annotate`), so that Wireshark shows them. Returns None when
    written, else why not, in one line."""
    try:
        from .annotate import annotate as write_annotated
    except ImportError:
        return "writing an annotated pcapng needs trace.annotate, which this checkout does not have"
    from .reader import load
    write_annotated(list(load(log)), pcap, out)
    return None


@dataclass
class NetRecording:
    scenario: netns.Scenario
    session: Session
    log: Path
    pcap: Path
    dropped: dict             # packets the loss rules dropped, by direction (nftables counters)
    missed: int               # packets tcpdump missed (the capture is incomplete if not 0)


def record_in_network(log, pcap, scenario: netns.Scenario, size: int = DEFAULT_SIZE,
                      script: list[str] | None = None, server_files: dict | None = None,
                      client_files: dict | None = None, active: bool = False,
                      workdir=None) -> NetRecording:
    """Run the session between the namespaces while tcpdump records the
    router-server cable. Raises :class:`trace.netns.NetworkError` (one line)
    if the network cannot be built; removes everything it built, whatever
    happens."""
    log, pcap = Path(log), Path(pcap)
    if log.exists():
        log.unlink()
    files = server_files if server_files is not None else {NET_FILE: size}
    with netns.Network(scenario) as net:
        with net.capturing(pcap) as capture:
            session = run_session(log, script or net_script(scenario), files, client_files,
                                  active=active, workdir=workdir, network=net)
        dropped = net.dropped() if scenario.loss else {}
    return NetRecording(scenario, session, log, pcap, dropped, capture.kernel_drops)


def record_or_sample(directory, scenario: netns.Scenario, size: int = DEFAULT_SIZE,
                     say: Callable[[str], None] | None = print) -> tuple[Path, Path, bool]:
    """For notebooks: record ``scenario`` into ``directory`` if this machine
    can build namespaces, else say why in one line and return the shipped
    sample. Returns ``(log, pcap, live)``.

    In a student release (no solutions/) the sample stands in too: its lab/
    may not transfer files yet, and the notebook compares links, not code.
    ``python -m trace.record --net`` runs the student's lab/ all the same."""
    reason = netns.why_not()
    if reason is None and IMPLEMENTATION != "solutions":
        reason = "the notebooks show the reference implementation, which a student release does not have"
    if reason is None:
        log = Path(directory, f"{scenario.name}.log")
        pcap = Path(directory, f"{scenario.name}.pcap")
        record_in_network(log, pcap, scenario, size)
        if say:
            say(f"Live session between network namespaces ({scenario.describe()}), traced "
                f"and captured: {log.name}, {pcap.name}.")
        return log, pcap, True
    log, pcap = sample_paths(scenario.name)
    if say:
        say(f"No live network session here ({reason}); using the recorded sample "
            f"trace/samples/{scenario.name}/ instead.")
    return log, pcap, False


# --- measuring -------------------------------------------------------------------------

@dataclass
class Transfer:
    command: str
    path: str
    bytes: int
    seconds: float
    verdict: str             # the client's word: verified, mismatch, aborted, ...
    sha256: str | None       # of the bytes the client received or sent


@dataclass
class Measurement:
    transfers: list[Transfer] = field(default_factory=list)
    segments: int = 0
    retransmitted: int = 0                  # segments whose bytes the wire had carried already
    delivered_bytes: int = 0                     # delivered on the data connections, by the ACKs
    delivered_seconds: float = 0.0
    trace_coverage: float = 0.0             # trace bytes found in the capture
    capture_coverage: float = 0.0           # capture bytes found in the trace
    correlated_retransmissions: int | None = None   # what trace.correlate marked, if it marks them

    @property
    def delivered_rate(self) -> float:
        """Bits per second the data connections delivered, by the capture's ACKs."""
        return 8 * self.delivered_bytes / self.delivered_seconds if self.delivered_seconds else 0.0


def measure(log, pcap) -> Measurement:
    """What the trace and the capture of a network session say."""
    from .correlate import correlate, read_segments
    from .reader import load

    events = list(load(log))
    result = Measurement()
    for event in events:
        if event["type"] == "transfer_end" and event.get("role") == "client":
            result.transfers.append(Transfer(event.get("command", "?"), event.get("path", "?"),
                                             event.get("bytes") or 0, event.get("duration") or 0.0,
                                             event.get("verdict", "?"), event.get("sha256")))
    segments = list(read_segments(pcap))
    result.segments = len(segments)
    result.retransmitted = len(retransmitted_segments(segments))
    result.delivered_bytes, result.delivered_seconds = delivered_rate(segments, netns.SERVER_PORT)
    correlation = correlate(events, segments)
    result.trace_coverage = correlation.coverage.trace_fraction
    result.capture_coverage = correlation.coverage.segment_fraction
    if all(hasattr(s, "retransmission") for s in correlation.segments):
        result.correlated_retransmissions = sum(1 for s in correlation.segments if s.retransmission)
    return result


def retransmitted_segments(segments) -> list:
    """The TCP segments whose payload repeats sequence numbers their direction
    had already carried: what the sender sent again. Independent of the
    trace; a segment counts when any of its bytes was seen before."""
    highest: dict = {}       # (src, sport, dst, dport) -> end of the highest sequence seen
    again = []
    for seg in segments:
        if not seg.len:
            continue
        flow = (seg.src, seg.sport, seg.dst, seg.dport)
        start, end = seg.seq, (seg.seq + seg.len) % (1 << 32)
        if flow not in highest:
            highest[flow] = end
            continue
        # Sequence numbers wrap at 2**32: "a before b" is a short way forward from a to b.
        if _before(start, highest[flow]):
            again.append(seg)
        if _before(highest[flow], end):
            highest[flow] = end
    return again


def _before(a: int, b: int) -> bool:
    return 0 < (b - a) % (1 << 32) < (1 << 31)


def delivered_rate(segments, control_port: int | None = None) -> tuple[int, float]:
    """``(bytes, seconds)`` the data connections delivered, as the capture
    shows it: from each data connection's first payload segment to the last
    acknowledgement its receiver sent back. Acknowledgements count only what
    arrived, so this is the rate the link carried, wherever the capture was
    taken (here in front of the router's queue, which the sender outruns at
    first)."""
    first: dict = {}        # data flow -> (time, seq) of its first payload segment
    last_ack: dict = {}     # data flow -> (time, ack) of the last ACK coming back
    for seg in segments:
        flow = (seg.src, seg.sport, seg.dst, seg.dport)
        if control_port in (seg.sport, seg.dport):
            continue
        if seg.len and flow not in first:
            first[flow] = (seg.t, seg.seq)
        back = (seg.dst, seg.dport, seg.src, seg.sport)
        if seg.flags & 0x10 and back in first:
            last_ack[back] = (seg.t, seg.ack)
    delivered, start, end = 0, None, None
    for flow, (t, seq) in first.items():
        if flow not in last_ack:
            continue
        t_ack, ack = last_ack[flow]
        delivered += (ack - seq) % (1 << 32)
        start = t if start is None else min(start, t)
        end = t_ack if end is None else max(end, t_ack)
    return delivered, (end - start) if start is not None else 0.0


def replies(log, code: int, role: str = "client") -> list[str]:
    """The texts of the replies with this code, as one side traced them."""
    from .reader import load
    return [e.get("text", "") for e in load(log)
            if e["type"] == "reply" and e.get("code") == code and e.get("role") == role]


def commands(log, verb: str, role: str = "client") -> list[str]:
    """The texts of the commands with this verb, as one side traced them."""
    from .reader import load
    return [e.get("text", "") for e in load(log)
            if e["type"] == "command" and e.get("verb") == verb and e.get("role") == role]


def report(recording: NetRecording, m: Measurement) -> str:
    """A few lines for the terminal."""
    lines = [f"scenario {recording.scenario.describe()}"]
    for t in m.transfers:
        rate = f", {8 * t.bytes / t.seconds / 1e6:.1f} Mbit/s" if t.seconds and t.bytes else ""
        lines.append(f"  {t.command} {t.path}: {t.bytes} B in {t.seconds:.3f} s{rate} ({t.verdict})")
    lines.append(f"  capture: {m.segments} TCP segments, {m.retransmitted} sent again"
                 + (f"; the loss rule dropped {sum(recording.dropped.values())} packets" if recording.scenario.loss else ""))
    if recording.missed:
        lines.append(f"  tcpdump missed {recording.missed} packets: the correlation has gaps that the "
                     "network did not make")
    if recording.scenario.rate:
        lines.append(f"  delivered (by the capture's ACKs): {m.delivered_rate / 1e6:.1f} Mbit/s against a limit of "
                     f"{netns.rate_bits(recording.scenario.rate) / 1e6:g} Mbit/s")
    lines.append(f"  correlation: {100 * m.trace_coverage:.2f}% of the trace's bytes in the capture, "
                 f"{100 * m.capture_coverage:.2f}% of the capture's in the trace")
    if recording.scenario.nat:
        lines.append("  (behind NAT the client's trace names its private address, the capture "
                     "the router's: only the server's side of each connection matches)")
    return "\n".join(lines)


_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|k|M|G)?\s*$", re.IGNORECASE)
_FACTORS = {None: 1, "b": 1, "kib": 1 << 10, "k": 1 << 10, "mib": 1 << 20, "m": 1 << 20,
            "gib": 1 << 30, "g": 1 << 30}


def parse_size(text: str) -> int:
    """``"10MiB"`` -> 10485760; a bare number is bytes."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (e.g. 512KiB, 10MiB)")
    unit = match.group(2).lower() if match.group(2) else None
    return int(match.group(1)) * _FACTORS[unit]
