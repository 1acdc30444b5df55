"""A real lossy transfer: the kernel's TCP repairs the loss, the trace never
notices, and the correlation names every retransmitted segment.

The session (reference server and client, with a capture) runs in a network
namespace of its own, made for this test and removed afterwards, whose
loopback drops every 7th large TCP packet after the capture has seen it
(an nftables rule on the input hook). Nothing outside the namespace is
touched. Needs root, iproute2 and nftables; skips with the reason without.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import trace
from trace.annotate import annotate
from trace.correlate import correlate

REPO = Path(__file__).resolve().parent.parent
SIZE = 2_000_000

# Drop every 7th TCP packet over 1000 bytes as it arrives: deterministic
# loss of data segments only, so the handshakes (and their 1 s SYN timer)
# are never hit and the session stays fast.
LOSS_RULES = """
table inet ftpkit_loss {
  chain input {
    type filter hook input priority 0;
    meta l4proto tcp meta length > 1000 numgen inc mod 7 == 3 drop
  }
}
"""

RECORD = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from trace.record import record, run_session
d = Path(sys.argv[2])
rec = record(d / "session.log", d / "capture.pcap", say=None,
             run=lambda log: run_session(log, ["get big.bin", "quit"], {"big.bin": %d}))
sys.exit(rec.session.client_status if rec.capture is not None else 3)
""" % SIZE


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "a network namespace with packet loss needs root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2, nftables)"
    return None


@pytest.fixture(scope="module")
def lossy_session(tmp_path_factory):
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    namespace = f"ftpkit-loss-{uuid.uuid4().hex[:8]}"
    d = tmp_path_factory.mktemp("lossy")
    subprocess.run(["ip", "netns", "add", namespace], check=True, timeout=30)
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True, timeout=30)
        subprocess.run(["ip", "netns", "exec", namespace, "nft", "-f", "-"], input=LOSS_RULES,
                       text=True, check=True, timeout=30)
        done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", RECORD,
                               str(REPO), str(d)], capture_output=True, text=True, timeout=300)
    finally:
        # Whatever this test started in its namespace (a server left by a
        # timeout), then the namespace itself.
        pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                              text=True, timeout=30).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", namespace], timeout=30)
    assert namespace not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                           text=True, timeout=30).stdout
    assert done.returncode == 0, done.stdout + done.stderr
    events = list(trace.load(d / "session.log"))
    return d, events, correlate(events, d / "capture.pcap")


def test_loss_is_repaired_below_the_trace_and_named_in_the_capture(lossy_session):
    _, events, result = lossy_session
    cov = result.coverage
    # Every byte matched both ways, each retransmitted byte counted once.
    assert cov.trace_matched == cov.trace_bytes > 2 * SIZE, cov.summary()
    assert cov.segment_matched == cov.segment_bytes, cov.summary()
    assert SIZE < cov.segment_bytes < SIZE + 1000          # the file plus the control lines
    assert cov.retransmitted_segments > 0 and cov.retransmitted_bytes > 0
    # The trace itself saw one clean stream: its receives tile the file.
    (data,) = [c for c in result.connections if c.channel == "data"]
    recvs = sorted((e["offset"], e["len"]) for e in events
                   if e["type"] == "recv" and e.get("channel") == "data" and e["len"])
    assert sum(n for _, n in recvs) == SIZE
    assert all(a + n == b for (a, n), (b, _) in zip(recvs, recvs[1:]))
    # Each retransmission names the sender's send and the receiver's recv it
    # repeats (TCP may also repeat a control line now and then: same rule).
    assert any(r.segment.connection is data for r in result.retransmissions)
    for repeat in result.retransmissions:
        seg = repeat.segment
        assert seg.retransmission and seg.offset <= repeat.start < repeat.end <= seg.offset + seg.len
        raw = {(e["dir"], e["type"]) for e in repeat.events if e["type"] in ("send", "recv")}
        assert raw == {("in", "recv"), ("out", "send")}, repeat.events
        assert all(result.connection_of(e) is seg.connection for e in repeat.events)
        if seg.connection is data:
            assert {e["role"] for e in repeat.events if e["type"] == "send"} == {"server"}
    assert sum(r.bytes for r in result.retransmissions) == cov.retransmitted_bytes


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_wireshark_agrees_on_which_frames_are_retransmissions(lossy_session, tmp_path):
    d, events, result = lossy_session
    out = tmp_path / "annotated.pcapng"
    annotate(events, d / "capture.pcap", out)

    def frames(display_filter: str) -> set[int]:
        listed = subprocess.run(["tshark", "-r", str(out), "-Y", display_filter, "-T", "fields",
                                 "-e", "frame.number"], capture_output=True, text=True,
                                timeout=120, check=True).stdout
        return {int(n) for n in listed.split()}
    repeats = {s.number for s in result.segments if s.repeated}
    # Loopback sometimes reorders a transfer (its segments handled on two
    # CPUs): a segment of new bytes then arrives below bytes already seen.
    # Wireshark flags it as it flags a repeat, so both are compared.
    overtaken = {s.number for s in result.segments if s.out_of_order}
    assert not repeats & overtaken
    # Wireshark's own analysis calls a repeat that follows its original
    # within an RTT "out-of-order" rather than "retransmission".
    theirs = frames("tcp.analysis.retransmission or tcp.analysis.fast_retransmission or "
                    "tcp.analysis.spurious_retransmission or tcp.analysis.out_of_order")
    commented = frames('frame.comment contains "(retransmission of" or frame.comment contains "(out of order"')
    assert repeats and repeats | overtaken == commented == theirs
