"""Capturing a session on loopback and matching it to the trace.

The live tests capture a real session of the reference server and client
(run as subprocesses) and need root or CAP_NET_RAW; without them they skip
and say why. The filter, the pcap writer and the one-line refusal run
everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

import trace
from trace.capture import NO_CAPTURE_REASON, Capture, PcapWriter, can_capture
from trace.correlate import correlate, read_segments
from trace.record import record, run_session

REPO = Path(__file__).resolve().parent.parent
live = pytest.mark.skipif(not can_capture(), reason="live capture needs root or CAP_NET_RAW")
has_solutions = pytest.mark.skipif(
    not (REPO / "solutions" / "server.py").exists() or not (REPO / "solutions" / "client.py").exists(),
    reason="the reference server and client (solutions/) are not in this checkout")

SERVER_FILES = {"down.bin": 3_000_000, "empty.bin": b""}
CLIENT_FILES = {"up.bin": os.urandom(200_000)}
# put, get and ls in passive mode, then the same in active mode.
SCRIPT = ["put up.bin", "get down.bin", "ls", "get empty.bin",
          "passive",
          "put up.bin up2.bin", "get down.bin down2.bin", "ls", "get empty.bin empty2.bin",
          "quit"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One live session (passive then active), its trace and its capture."""
    if not can_capture():
        pytest.skip("live capture needs root or CAP_NET_RAW")
    d = tmp_path_factory.mktemp("live")
    log, pcap = d / "session.log", d / "capture.pcap"
    rec = record(log, pcap, run=lambda log: run_session(log, SCRIPT, SERVER_FILES, CLIENT_FILES),
                 say=None)
    assert rec.session.client_status == 0, rec.session.client_output
    assert rec.capture is not None
    events = list(trace.load(log))
    return rec, events, correlate(events, pcap), pcap


@live
@has_solutions
def test_live_capture_matches_every_byte_both_ways(recorded):
    rec, events, result, pcap = recorded
    cov = result.coverage
    # Nothing of the session was lost: every byte is matched both ways. (On a
    # busy machine the sniffer may still drop other programs' loopback
    # traffic, and TCP may retransmit; both are fine here: retransmitted
    # bytes are counted once, as the synthetic tests check.)
    assert cov.trace_bytes > 2 * (3_000_000 + 200_000) * 2    # both ends, both modes
    assert cov.trace_matched == cov.trace_bytes, cov.summary()
    assert cov.segment_matched == cov.segment_bytes, cov.summary()
    assert not cov.unmatched_trace and not cov.unmatched_segments
    assert not cov.untraced_connections and not cov.uncaptured_ends
    assert not result.notes
    # Each loopback packet once (scapy's native socket sees it twice).
    from scapy.utils import RawPcapReader
    frames = [f for f, _ in RawPcapReader(str(pcap))]
    assert len(frames) == len(set(frames)) == rec.capture.kept
    # Every traced send and recv found its segments.
    for ev in events:
        if ev["type"] in ("send", "recv") and ev["len"]:
            assert result.segments_for(ev), ev


@live
@has_solutions
def test_live_data_connections_open_and_close_for_their_commands(recorded):
    _, events, result, _ = recorded
    data = [c for c in result.connections if c.channel == "data"]
    assert len(data) == 8                      # 4 transfers in each mode
    verbs = []
    for conn in data:
        kinds = [(s.kind, s.direction) for s in conn.open]
        assert ("syn", 0) in kinds and ("syn-ack", 1) in kinds, conn.name
        assert conn.fin_seen == [True, True] and not conn.reset, conn.name
        fins = {s.direction for s in conn.close if s.kind == "fin"}
        assert fins == {0, 1}
        # Attributed to the announcement and to the transfer command, as
        # seen by both the client and the server.
        assert len(conn.announced_by) == 2 and len(conn.used_by) == 2, conn.name
        announce = {e.get("code") or e.get("verb") for e in conn.announced_by}
        assert announce in ({227}, {"PORT"})
        (verb,) = {e["verb"] for e in conn.used_by}
        verbs.append((announce.pop(), verb))
        for ev in conn.causes:
            assert conn in result.connections_caused_by(ev)
        assert len(conn.ends) == 2
    assert sorted(verbs, key=str) == sorted(
        [(227, "STOR"), (227, "RETR"), (227, "LIST"), (227, "RETR"),
         ("PORT", "STOR"), ("PORT", "RETR"), ("PORT", "LIST"), ("PORT", "RETR")], key=str)
    # The empty files: a handshake and a teardown and nothing between.
    empty = [c for c in data if not any(s.len for s in c.segments)]
    assert len(empty) == 2


@live
@has_solutions
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)")
def test_tshark_reads_the_capture_and_finds_every_command(recorded):
    _, events, result, pcap = recorded
    port = next(int(e["local"].rsplit(":", 1)[1]) for e in events
                if e["type"] == "listen" and e["channel"] == "control")
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"tcp.port=={port},ftp", "-Y", "ftp.request.command",
         "-T", "fields", "-e", "ftp.request.command", "-e", "ftp.request.arg"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    seen = [tuple((line.split("\t") + [""])[:2]) for line in out.splitlines() if line.strip()]
    traced = [(e["verb"], e["arg"]) for e in events
              if e["type"] == "command" and e["role"] == "client"]
    assert len(traced) > 10
    # PASS is redacted in the trace; tshark sees the real argument.
    assert [(v, "****" if v == "PASS" else a) for v, a in seen] == traced

    # tshark agrees with our relative numbers and lengths, frame by frame,
    # and finds nothing wrong (no frame cut short of its IP length).
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.number",
                          "-e", "tcp.seq", "-e", "tcp.ack", "-e", "tcp.len"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    theirs = [tuple(int(x) for x in line.split("\t")) for line in out.splitlines()]
    ours = [(s.number, s.rel_seq, s.rel_ack or 0, s.len) for s in result.segments]
    assert theirs == ours
    lengths = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.cap_len",
                              "-e", "frame.len"], capture_output=True, text=True, timeout=60,
                             check=True).stdout.split()
    assert lengths[0::2] == lengths[1::2]          # every frame captured whole
    errors = subprocess.run(["tshark", "-r", str(pcap), "-Y", "_ws.expert.severity == error"],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    assert errors == ""


@live
@has_solutions
def test_only_the_session_is_kept(tmp_path):
    """A connection on loopback that is not the session's stays out."""
    import socket
    import threading
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen()

    def noise():
        c, _ = other.accept()
        c.sendall(b"not ftp at all\r\n" * 100)
        c.close()
    log, pcap = tmp_path / "s.log", tmp_path / "c.pcap"

    def run(log):
        t = threading.Thread(target=noise)
        t.start()
        with socket.create_connection(other.getsockname()) as c:
            while c.recv(65536):
                pass
        t.join()
        return run_session(log, ["ls", "quit"])
    rec = record(log, pcap, run=run, say=None)
    other.close()
    result = correlate(trace.load(log), pcap)
    assert not result.coverage.untraced_connections
    assert {c.channel for c in result.connections} == {"control", "data"}
    assert rec.capture.kept == len(result.segments)


@has_solutions
def test_without_privilege_it_says_so_and_records_the_trace(tmp_path):
    """As an unprivileged process (no CAP_NET_RAW), `trace.record` records
    the trace alone and says why in one line."""
    setpriv = shutil.which("setpriv")
    if can_capture() and setpriv:
        # Drop CAP_NET_RAW from the child, as a student without root runs it.
        prefix = [setpriv, "--bounding-set=-net_raw", "--inh-caps=-net_raw"]
    elif not can_capture():
        prefix = []
    else:
        pytest.skip("cannot drop CAP_NET_RAW here (setpriv from util-linux is missing)")
    log, pcap = tmp_path / "session.log", tmp_path / "capture.pcap"
    out = subprocess.run(prefix + [sys.executable, "-m", "trace.record", "--capture", str(pcap),
                                   str(log)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if "no capture" in line]
    assert lines == [f"no capture: {NO_CAPTURE_REASON}; recording the trace alone"]
    assert not pcap.exists()
    assert any(e["type"] == "command" for e in trace.load(log))


# --- the filter and the writer, on frames built here ----------------------------

def _frame(src, dst, flags, seq=1, ack=1, payload=b""):
    p = Ether() / IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], flags=flags,
                                                   seq=seq, ack=ack)
    return bytes(p / payload) if payload else bytes(p)


def test_filter_learns_the_session_from_the_control_channel(tmp_path):
    """No control port given: the 220 greeting names it, the 227 reply and
    the PORT command name the data ports, anything else is left out, and the
    file keeps capture order."""
    cli, srv = ("127.0.0.1", 40000), ("127.0.0.1", 2121)
    stranger, web = ("127.0.0.1", 40001), ("127.0.0.1", 8080)
    d_cli, d_srv = ("127.0.0.1", 40002), ("127.0.0.1", 50000)
    a_srv, a_cli = ("127.0.0.1", 40003), ("127.0.0.1", 45678)
    frames = [
        ("keep", _frame(cli, srv, "S")),
        ("drop", _frame(stranger, web, "S")),
        ("keep", _frame(srv, cli, "SA")),
        ("drop", _frame(web, stranger, "SA")),
        ("keep", _frame(cli, srv, "A")),
        ("drop", _frame(web, stranger, "PA", payload=b"HTTP/1.1 200 OK\r\n")),
        ("keep", _frame(srv, cli, "PA", payload=b"220 ready\r\n")),
        ("keep", _frame(cli, srv, "PA", payload=b"PASV\r\n")),
        ("keep", _frame(srv, cli, "PA", payload=b"227 Entering Passive Mode (127,0,")),
        ("keep", _frame(srv, cli, "PA", payload=b"0,1,195,80).\r\n")),     # split line
        ("keep", _frame(d_cli, d_srv, "S")),
        ("keep", _frame(d_srv, d_cli, "SA")),
        ("drop", _frame(stranger, web, "FA")),
        ("keep", _frame(cli, srv, "PA", payload=b"PORT 127,0,0,1,178,110\r\n")),
        ("keep", _frame(a_srv, a_cli, "S")),
        ("drop", _frame(("127.0.0.1", 1), ("127.0.0.1", 2), "A")),     # no SYN seen: not ours
    ]
    cap = Capture(tmp_path / "c.pcap")
    for i, (_, f) in enumerate(frames):
        cap.feed(f, 1000.0 + i / 1000)
    cap.finish()
    kept = [f for verdict, f in frames if verdict == "keep"]
    assert cap.control_ports == {2121} and cap.data_ports == {50000, 45678}
    segs = list(read_segments(tmp_path / "c.pcap"))
    assert [s.payload for s in segs] == [f[54:] for f in kept]
    assert [(s.sport, s.dport) for s in segs] == [
        (int.from_bytes(f[34:36], "big"), int.from_bytes(f[36:38], "big")) for f in kept]
    assert [round(s.t, 6) for s in segs] == sorted(round(s.t, 6) for s in segs)
    assert cap.kept == len(kept)


def test_filter_with_a_known_control_port(tmp_path):
    cli, srv = ("127.0.0.1", 40000), ("127.0.0.1", 2121)
    cap = Capture(tmp_path / "c.pcap", control_port=2121)
    cap.feed(_frame(cli, srv, "A", payload=b"NOOP\r\n"), 1.0)       # mid-session: still kept
    cap.feed(_frame(("127.0.0.1", 5), ("127.0.0.1", 6), "S"), 2.0)  # never greets: dropped
    cap.feed(_frame(("127.0.0.1", 6), ("127.0.0.1", 5), "SA"), 3.0)
    cap.finish()
    segs = list(read_segments(tmp_path / "c.pcap"))
    assert [s.payload for s in segs] == [b"NOOP\r\n"]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)")
def test_pcap_writer_output_opens_in_tshark(tmp_path):
    path = tmp_path / "w.pcap"
    big = b"x" * 65483                         # a full loopback segment: frame > 65535
    with PcapWriter(path) as w:
        w.write(_frame(("127.0.0.1", 1), ("127.0.0.1", 2), "S"), 1.5)
        w.write(_frame(("127.0.0.1", 1), ("127.0.0.1", 2), "PA", payload=big), 1.25)
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.len",
                          "-e", "tcp.len", "-e", "frame.time_epoch"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.split("\n")
    assert out[0].split("\t")[:2] == ["54", "0"]
    assert out[1].split("\t")[:2] == [str(54 + len(big)), str(len(big))]
    assert float(out[1].split("\t")[2]) == pytest.approx(1.25)


def test_filter_takes_the_control_port_from_the_trace_log(tmp_path):
    """With the session's log, another FTP session on the same machine
    (greeting and all) stays out."""
    log = tmp_path / "session.log"
    cap = Capture(tmp_path / "c.pcap", log=log)
    ours, theirs = ("127.0.0.1", 2121), ("127.0.0.1", 2222)
    cli1, cli2 = ("127.0.0.1", 40000), ("127.0.0.1", 40001)
    cap.feed(_frame(cli2, theirs, "S"), 1.0)                       # before our server starts
    cap.feed(_frame(theirs, cli2, "SA"), 1.1)
    cap.feed(_frame(theirs, cli2, "PA", payload=b"220 other server\r\n"), 1.2)
    log.write_text('{"type":"header","t":1.5,"seq":0,"role":"server","pid":1}\n'
                   '{"type":"listen","t":1.5,"seq":1,"role":"server","pid":1,"conn":1,'
                   '"channel":"control","local":"127.0.0.1:2121"}\n')
    cap.feed(_frame(cli1, ours, "S"), 2.0)
    cap.feed(_frame(ours, cli1, "SA"), 2.1)
    cap.feed(_frame(ours, cli1, "PA", payload=b"220 ours\r\n"), 2.2)
    cap.feed(_frame(theirs, cli2, "PA", payload=b"227 Entering Passive Mode (127,0,0,1,4,1)\r\n"), 2.3)
    cap.finish()
    assert cap.control_ports == {2121} and cap.data_ports == set()
    assert [s.payload for s in read_segments(tmp_path / "c.pcap")] == [b"", b"", b"220 ours\r\n"]


@has_solutions
def test_record_or_sample_gives_a_pair_that_correlates(tmp_path):
    from trace.record import SAMPLE_LOG, SAMPLE_PCAP, record_or_sample
    said = []
    log, pcap = record_or_sample(tmp_path, say=said.append)
    if can_capture():
        assert (log, pcap) == (tmp_path / "session.log", tmp_path / "capture.pcap")
        assert said == []
    else:
        assert (log, pcap) == (SAMPLE_LOG, SAMPLE_PCAP)
        assert len(said) == 1 and NO_CAPTURE_REASON in said[0]
    r = correlate(trace.load(log), pcap)
    assert r.coverage.trace_fraction == 1.0 and r.coverage.segment_fraction == 1.0


@live
@has_solutions
@pytest.mark.parametrize("tool", ["tcpdump", "dumpcap"])
def test_captures_made_by_other_tools_correlate(tmp_path, tool):
    """What a student makes on their own machine: tcpdump on every
    interface (Linux cooked v2 link type), dumpcap on loopback (pcapng)."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (apt-get install {tool if tool == 'tcpdump' else 'tshark'})")
    pcap = tmp_path / ("any.pcap" if tool == "tcpdump" else "lo.pcapng")
    args = {"tcpdump": ["tcpdump", "--immediate-mode", "-B", "131072", "-s", "0", "-i", "any", "-w", str(pcap), "tcp"],
            "dumpcap": ["dumpcap", "-B", "128", "-i", "lo", "-f", "tcp", "-w", str(pcap)]}[tool]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ready = "listening on" if tool == "tcpdump" else "Capturing on"
        line = ""
        while ready not in line:
            line = proc.stderr.readline()
            assert line, f"{tool} did not start"
        log = tmp_path / "session.log"
        session = run_session(log, ["get big.bin", "ls", "passive", "put up.bin", "quit"],
                              {"big.bin": 2_000_000}, {"up.bin": 100_000})
        assert session.client_status == 0, session.client_output
    finally:
        import time
        time.sleep(0.3)
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()
    result = correlate(trace.load(log), pcap)
    cov = result.coverage
    assert cov.trace_matched == cov.trace_bytes > 4_000_000, cov.summary()
    assert cov.segment_matched == cov.segment_bytes, cov.summary()
    data = [c for c in result.connections if c.channel == "data"]
    assert len(data) == 3 and all(c.has_handshake() and all(c.fin_seen) and c.causes for c in data)


def test_record_keeps_an_older_log_instead_of_overwriting_it(tmp_path):
    """`python -m trace.record LOG` over an existing LOG used to replace it without a word."""
    log = tmp_path / "session.log"
    log.write_text("an older recording\n")
    done = subprocess.run([sys.executable, "-m", "trace.record", "--no-capture", str(log)],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "session.log.old").read_text() == "an older recording\n"
    assert f"kept it as {tmp_path / 'session.log.old'}" in done.stdout
    assert log.read_text().startswith("{")
