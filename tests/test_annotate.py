"""The annotated pcapng: every frame carries the trace's view as a comment,
read back with tshark (Wireshark's command line), timestamps and link types
unchanged."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether, Loopback
from scapy.layers.inet6 import IPv6
from scapy.utils import wrpcap

from test_correlate import _lossy_transfer, _session
from trace.annotate import NOT_TCP, annotate
from trace.correlate import CaptureFileError
from trace.pcap import read_frames

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None,
                                  reason="tshark is not installed (apt-get install tshark)")


def tshark_fields(path, *fields) -> list[list[str]]:
    command = ["tshark", "-r", str(path), "-T", "fields"]
    for name in fields:
        command += ["-e", name]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return [line.split("\t") for line in out.stdout.splitlines()]


PASSIVE_COMMENTS = [
    "SYN of the control connection",
    "SYN-ACK of the control connection",
    "ACK of the control connection's handshake",
    "control: PASV",
    "control: 227 Entering Passive Mode (127,0,0,1,195,203).",
    "control: RETR a.bin",
    "control: 226 Transfer complete.",
    "SYN of data #1, announced by the 227",
    "SYN-ACK of data #1, announced by the 227",
    "ACK of data #1's handshake",
    "data #1 for RETR a.bin: bytes 0-4",
    "FIN of data #1 from 127.0.0.1:50123",
    "ACK of data #1's FIN from 127.0.0.1:50123",
    "FIN of data #1 from 127.0.0.1:41001",
    "ACK of data #1's FIN from 127.0.0.1:41001",
]


@needs_tshark
def test_tshark_reads_back_a_comment_on_every_frame(tmp_path):
    events, packets = _session(passive=True)
    source, out = tmp_path / "c.pcap", tmp_path / "c.pcapng"
    stray = Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=7, dport=9, flags="S")
    arp = Ether(type=0x0806) / (b"\0" * 28)                  # not TCP, still a frame
    stray.time = arp.time = packets[-1].time + 1
    wrpcap(str(source), [Ether() / p for p in packets] + [stray, arp])
    annotate(events, source, out)
    rows = tshark_fields(out, "frame.comment", "frame.time_epoch", "frame.len")
    comments = [row[0] for row in rows]
    assert comments == PASSIVE_COMMENTS + [
        "not in the trace: 127.0.0.1:7 > 127.0.0.1:9", NOT_TCP]
    original = tshark_fields(source, "frame.time_epoch", "frame.len")
    assert [row[1:] for row in rows] == original               # same times, same frames


@needs_tshark
def test_active_mode_names_the_port_command(tmp_path):
    events, packets = _session(passive=False)
    source, out = tmp_path / "a.pcap", tmp_path / "a.pcapng"
    wrpcap(str(source), [Ether() / p for p in packets])
    annotate(events, source, out)
    comments = [row[0] for row in tshark_fields(out, "frame.comment")]
    assert "control: PORT 127,0,0,1,178,110" in comments
    assert "SYN of data #1, announced by the PORT" in comments
    assert "data #1 for RETR a.bin: bytes 0-4" in comments


def _annotated(cv, tmp_path):
    """A made-up conversation written as a capture and annotated: the
    annotated file and its comments, frame by frame."""
    source, out = tmp_path / "c.pcap", tmp_path / "c.pcapng"
    wrpcap(str(source), [Ether() / p for p in cv.packets])
    annotate(cv.events, source, out)
    return out, [row[0] for row in tshark_fields(out, "frame.comment")]


@needs_tshark
def test_retransmissions_are_named_in_the_comments(tmp_path):
    cv, _, _ = _lossy_transfer()
    _, comments = _annotated(cv, tmp_path)
    assert comments[3:10] == [
        "data #1: bytes 0-999",
        "ACK on data #1: bytes 0-999 received",
        "data #1: bytes 1000-1999",
        "data #1: bytes 2000-2999",
        "ACK on data #1: bytes 0-999 received",
        "data #1: bytes 1000-1999 (retransmission of 1000 bytes)",
        "ACK on data #1: bytes 0-2999 received",
    ]


@needs_tshark
def test_a_reordered_segment_is_named_in_its_comment(tmp_path):
    from test_correlate import _reordered_transfer
    cv, _, _ = _reordered_transfer()
    out, comments = _annotated(cv, tmp_path)
    assert comments[3:6] == [
        "data #1: bytes 0-999",
        "data #1: bytes 2000-2999",
        "data #1: bytes 1000-1999 (out of order: arrived after later bytes)",
    ]
    # Wireshark's own analysis marks that frame too (out-of-order, or, when it
    # comes long enough after the frame before, a suspected retransmission).
    flagged = subprocess.run(["tshark", "-r", str(out), "-Y", "tcp.analysis.out_of_order or "
                              "tcp.analysis.retransmission", "-T", "fields",
                              "-e", "frame.number"], capture_output=True, text=True, timeout=120, check=True)
    assert flagged.stdout.split() == ["6"]


def test_timestamps_and_link_type_are_kept_exactly(tmp_path):
    """A nanosecond capture of macOS loopback frames, IPv6: written back
    frame for frame, tick for tick."""
    from test_correlate import Conversation
    cv = Conversation(client=("::1", 40000), server=("::1", 50000), ipv6=True)
    cv.handshake()
    cv.send(cv.client, 0, 3)
    cv.data(cv.client, b"abc")
    cv.recv(cv.server, 0, 3)
    framed = []
    for p in cv.packets:
        f = Loopback(type=30) / p
        f.time = p.time + 0.000000123
        framed.append(f)
    source, out = tmp_path / "n.pcap", tmp_path / "n.pcapng"
    wrpcap(str(source), framed, linktype=0, nano=True)
    annotate(cv.events, source, out)
    before, after = list(read_frames(source)), list(read_frames(out))
    assert [(f.linktype, f.ticks, f.resolution, f.data, f.wirelen) for f in after] == \
        [(f.linktype, f.ticks, f.resolution, f.data, f.wirelen) for f in before]
    assert before[0].resolution == 10**9 and before[0].linktype == 0


def test_command_line_annotates_and_refuses_clearly(tmp_path):
    events, packets = _session(passive=True)
    log = tmp_path / "session.log"
    import json
    log.write_text('{"type":"header","t":1.0,"seq":0,"role":"server","pid":2,'
                   '"format":"ftpkit-trace","schema":1,"host":"h","start":1.0}\n'
                   + "".join(json.dumps(e) + "\n" for e in events))
    source, out = tmp_path / "c.pcap", tmp_path / "c.pcapng"
    wrpcap(str(source), [Ether() / p for p in packets])

    def run(*args):
        return subprocess.run([sys.executable, "-m", "trace.correlate", *map(str, args)],
                              capture_output=True, text=True, timeout=120)
    done = run(log, source, "--annotate", out)
    assert done.returncode == 0, done.stderr
    assert "trace bytes found in segments: 190 of 190 (100.00%)" in done.stdout
    assert f"annotated capture written to {out}" in done.stdout
    assert len(list(read_frames(out))) == len(packets)
    # Bad input: one line naming the file, nothing written over the capture.
    size = source.stat().st_size
    for args, message in [((log, log), "not a pcap or pcapng capture"),
                          ((log, tmp_path / "nope.pcap"), "no such file"),
                          ((log, source, "--annotate", source), "is the capture being annotated"),
                          ((log, source, "--annotate", tmp_path / "no" / "x.pcapng"),
                           "No such file or directory")]:
        failed = run(*args)
        assert failed.returncode == 2, failed
        assert failed.stderr.count("\n") == 1 and message in failed.stderr, failed.stderr
    assert source.stat().st_size == size


def test_annotating_a_capture_onto_itself_is_refused(tmp_path):
    events, packets = _session(passive=True)
    source = tmp_path / "c.pcap"
    wrpcap(str(source), [Ether() / p for p in packets])
    with pytest.raises(CaptureFileError, match="is the capture being annotated"):
        annotate(events, source, source)
    assert len(list(read_frames(source))) == len(packets)


def test_command_line_says_when_the_capture_is_of_another_session(tmp_path):
    from test_correlate import _other_session
    samples = __import__("pathlib").Path(__file__).resolve().parent.parent / "trace" / "samples"
    other = tmp_path / "other.pcap"
    wrpcap(str(other), [Ether() / p for p in _other_session()])
    done = subprocess.run([sys.executable, "-m", "trace.correlate", str(samples / "session.log"),
                           str(other)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    first, second = done.stdout.splitlines()[:2]
    assert first.startswith("the capture holds none of the trace's") and "another session" in first
    assert second.startswith("trace bytes found in segments: 0 of ") and second.endswith("(0.00%)")
    assert second != "trace bytes found in segments: 0 of 0 (0.00%)"     # the trace's bytes count
    same = subprocess.run([sys.executable, "-m", "trace.correlate", str(samples / "session.log"),
                           str(samples / "capture.pcap")], capture_output=True, text=True,
                          timeout=120)
    assert same.returncode == 0 and "(100.00%)" in same.stdout.splitlines()[0]
