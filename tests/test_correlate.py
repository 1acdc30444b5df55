"""Correlation of trace events with TCP segments, on synthetic captures.

The packets are built with scapy, exactly as a kernel would have sent them
(absolute sequence numbers from an arbitrary ISN), and the trace events are
written by hand in the trace format; no capture privileges are needed.
"""

from __future__ import annotations

import itertools
import re

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, Ether, Loopback
from scapy.utils import PcapNgWriter, wrpcap

from trace.correlate import (Segment, correlate, parse_announcement, read_segments,
                             split_address)

CLIENT = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 50000)
CISN, SISN = 1_000_000, 3_000_000


class Conversation:
    """Builds one TCP connection's packets and both ends' trace events."""

    def __init__(self, client=CLIENT, server=SERVER, cisn=CISN, sisn=SISN, channel="data",
                 t0=100.0, ipv6=False):
        self.client, self.server = client, server
        self.isn = {client: cisn, server: sisn}
        self.next = {client: cisn, server: sisn}     # next absolute seq per sender
        self.packets, self.events = [], []
        self.channel = channel
        self.t = t0
        self.ipv6 = ipv6
        self.seq = itertools.count()
        self.ends = {client: (1, 1, "client"), server: (2, 7, "server")}

    def _addr(self, a):
        return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"

    def tick(self):
        self.t += 0.001
        return self.t

    def packet(self, src, flags, seq=None, payload=b"", ack=None):
        dst = self.server if src == self.client else self.client
        seq = self.next[src] if seq is None else seq
        ack = self.next[dst] if ack is None else ack
        ip = IPv6(src=src[0], dst=dst[0]) if self.ipv6 else IP(src=src[0], dst=dst[0])
        p = ip / TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq & 0xFFFFFFFF,
                     ack=ack & 0xFFFFFFFF if "A" in flags else 0)
        if payload:
            p = p / payload
        p.time = self.tick()
        self.packets.append(p)
        return p

    def handshake(self):
        c, s = self.client, self.server
        self.packet(c, "S", ack=0)
        self.next[c] += 1
        self.packet(s, "SA")
        self.next[s] += 1
        self.packet(c, "A")
        self.event(c, "connect")
        self.event(s, "accept")

    def data(self, src, payload, flags="PA"):
        """A segment carrying ``payload`` at the sender's next sequence number."""
        self.packet(src, flags, payload=payload)
        self.next[src] += len(payload)

    def fin(self, src):
        self.packet(src, "FA")
        self.next[src] += 1

    def event(self, who, type, **fields):
        pid, conn, role = self.ends[who]
        other = self.server if who == self.client else self.client
        ev = {"type": type, "t": self.tick(), "seq": next(self.seq), "role": role, "pid": pid,
              "conn": conn, "channel": self.channel, "local": self._addr(who),
              "remote": self._addr(other)}
        ev.update(fields)
        self.events.append(ev)
        return ev

    def send(self, who, offset, length, **extra):
        return self.event(who, "send", dir="out", offset=offset, len=length, **extra)

    def recv(self, who, offset, length, **extra):
        return self.event(who, "recv", dir="in", offset=offset, len=length, **extra)

    def close_both(self, first):
        other = self.server if first == self.client else self.client
        self.fin(first)
        self.packet(other, "A")
        self.fin(other)
        self.packet(first, "A")


def test_coalesced_sends_share_one_segment():
    cv = Conversation()
    cv.handshake()
    sends = [cv.send(cv.client, i * 100, 100) for i in range(3)]
    cv.data(cv.client, b"x" * 300)                      # the kernel coalesced them
    recv = cv.recv(cv.server, 0, 300)
    cv.close_both(cv.client)
    r = correlate(cv.events, cv.packets)
    seg = r.segments_for(sends[0])[0]
    assert seg.len == 300 and seg.rel_seq == 1 and seg.offset == 0
    assert all(r.segments_for(s) == [seg] for s in sends)
    assert r.segments_for(recv) == [seg]
    assert seg.events == sends + [recv]
    cov = r.coverage
    assert (cov.trace_bytes, cov.trace_matched) == (600, 600)
    assert (cov.segment_bytes, cov.segment_matched) == (300, 300)
    assert not cov.unmatched_trace and not cov.unmatched_segments


def test_split_send_spans_segments():
    cv = Conversation()
    cv.handshake()
    send = cv.send(cv.server, 0, 3000)
    for _ in range(3):
        cv.data(cv.server, b"y" * 1000)
    recvs = [cv.recv(cv.client, 0, 1500), cv.recv(cv.client, 1500, 1500)]
    cv.close_both(cv.server)
    r = correlate(cv.events, cv.packets)
    segs = r.segments_for(send)
    assert [(s.rel_seq, s.len) for s in segs] == [(1, 1000), (1001, 1000), (2001, 1000)]
    assert [s.number for s in r.segments_for(recvs[0])] == [segs[0].number, segs[1].number]
    assert [s.number for s in r.segments_for(recvs[1])] == [segs[1].number, segs[2].number]
    assert segs[1].events == [send, recvs[0], recvs[1]]
    assert r.coverage.trace_fraction == 1.0 and r.coverage.segment_fraction == 1.0


def test_retransmission_counted_once():
    cv = Conversation()
    cv.handshake()
    send = cv.send(cv.client, 0, 2000)
    cv.data(cv.client, b"a" * 1000)
    cv.data(cv.client, b"b" * 1000)
    # The second segment again, then an overlapping repacketised retransmission.
    cv.packet(cv.client, "PA", seq=CISN + 1 + 1000, payload=b"b" * 1000)
    cv.packet(cv.client, "PA", seq=CISN + 1 + 500, payload=b"c" * 1000)
    recv = cv.recv(cv.server, 0, 2000)
    cv.close_both(cv.client)
    r = correlate(cv.events, cv.packets)
    data = [s for s in r.segments if s.len]
    assert [s.retransmission for s in data] == [False, False, True, True]
    assert r.coverage.segment_bytes == 2000
    assert r.coverage.retransmitted_bytes == 2000
    assert r.coverage.segment_matched == 2000 and r.coverage.trace_matched == 4000
    assert r.segments_for(send) == data and r.segments_for(recv) == data


def test_zero_length_file_has_handshake_and_fins():
    cv = Conversation()
    cv.handshake()
    cv.event(cv.server, "send", dir="out", offset=0, len=0)   # sendfile of an empty file
    cv.fin(cv.server)
    eof = cv.recv(cv.client, 0, 0)
    cv.packet(cv.client, "A")
    cv.fin(cv.client)
    cv.packet(cv.server, "A")
    close = cv.event(cv.client, "close", sent=0, received=0)
    r = correlate(cv.events, cv.packets)
    (conn,) = r.connections
    assert conn.has_handshake() and conn.fin_seen == [True, True] and not conn.reset
    fin = r.segments_for(eof)
    assert len(fin) == 1 and fin[0].kind == "fin" and fin[0].direction == 1
    assert fin[0].rel_seq == 1 and eof in fin[0].events
    assert [s.kind for s in conn.open] == ["syn", "syn-ack", "ack"]
    assert [s.kind for s in conn.close] == ["fin", "ack", "fin", "ack"]
    assert r.segments_for(close) == conn.close
    assert r.coverage.trace_bytes == 0 and r.coverage.segment_bytes == 0
    assert r.coverage.trace_fraction == 1.0


def test_reset_without_fin_and_unmatched_bytes_listed():
    cv = Conversation()
    cv.handshake()
    send = cv.send(cv.client, 0, 5000)                      # the trace says 5000 went out
    cv.data(cv.client, b"z" * 1000)
    cv.data(cv.client, b"z" * 1000)
    cv.packet(cv.server, "RA")                              # ... but the peer reset
    recv = cv.recv(cv.server, 0, 1000)
    r = correlate(cv.events, cv.packets)
    (conn,) = r.connections
    assert conn.reset and conn.fin_seen == [False, False]
    assert [s.kind for s in conn.close] == ["rst"]
    cov = r.coverage
    assert cov.trace_bytes == 6000 and cov.trace_matched == 3000
    assert cov.unmatched_trace == [(send, 2000, 5000)]
    # The server read only 1000: the capture's second 1000 are in the
    # client's send, so they are still found in the trace.
    assert cov.segment_bytes == 2000 and cov.segment_matched == 2000
    assert r.segments_for(recv)[0].rel_seq == 1
    assert "not in the capture" in cov.summary()


def test_segment_bytes_missing_from_the_trace_are_listed():
    cv = Conversation()
    cv.handshake()
    cv.send(cv.client, 0, 100)
    cv.data(cv.client, b"q" * 100)
    cv.data(cv.client, b"r" * 50)                           # never traced
    r = correlate(cv.events, cv.packets)
    cov = r.coverage
    assert (cov.segment_bytes, cov.segment_matched) == (150, 100)
    ((conn, direction, start, end, segs),) = cov.unmatched_segments
    assert (direction, start, end) == (0, 100, 150) and segs[0].len == 50
    assert "not in the trace" in cov.summary()


def test_sequence_numbers_wrap_around():
    cv = Conversation(cisn=0xFFFFFFFF - 1500)
    cv.handshake()
    send = cv.send(cv.client, 0, 4000)
    for _ in range(4):
        cv.data(cv.client, b"w" * 1000)
    cv.recv(cv.server, 0, 4000)
    cv.close_both(cv.client)
    r = correlate(cv.events, cv.packets)
    assert [s.rel_seq for s in r.segments_for(send)] == [1, 1001, 2001, 3001]
    assert r.coverage.trace_fraction == 1.0 and r.coverage.segment_fraction == 1.0
    fin = [s for s in r.segments if s.kind == "fin" and s.direction == 0][0]
    assert fin.rel_seq == 4001


def test_capture_started_late_is_reported_not_guessed():
    cv = Conversation()
    cv.handshake()
    send = cv.send(cv.client, 0, 100)
    cv.data(cv.client, b"l" * 100)
    packets = cv.packets[3:]                                # no handshake captured
    r = correlate(cv.events, packets)
    assert any("no SYN" in note for note in r.notes)
    assert r.coverage.trace_matched == 0 and r.coverage.unmatched_trace == [(send, 0, 100)]
    assert r.coverage.segment_bytes == 100 and r.coverage.unmatched_segments


def test_ipv6_connection():
    cv = Conversation(client=("::1", 40000), server=("::1", 50000), ipv6=True)
    cv.handshake()
    cv.send(cv.client, 0, 10)
    cv.data(cv.client, b"0123456789")
    cv.recv(cv.server, 0, 10)
    cv.close_both(cv.client)
    r = correlate(cv.events, cv.packets)
    assert r.coverage.trace_matched == 20 and r.coverage.segment_matched == 10
    assert r.connections[0].has_handshake()


def _session(passive: bool):
    """A control connection announcing a data connection, then the transfer."""
    ctl = Conversation(client=("127.0.0.1", 41000), server=("127.0.0.1", 2121),
                       channel="control", cisn=5, sisn=9)
    ctl.ends = {ctl.client: (1, 1, "client"), ctl.server: (2, 1, "server")}
    ctl.handshake()
    data_client = ("127.0.0.1", 41001) if passive else ("127.0.0.1", 2120)
    data_server = ("127.0.0.1", 50123) if passive else ("127.0.0.1", 45678)
    listener = data_server
    p1, p2 = divmod(listener[1], 256)
    off = {"c": 0, "s": 0}

    def line(who, text, **fields):
        raw = (text + "\r\n").encode()
        src = ctl.client if who == "c" else ctl.server
        dst = ctl.server if who == "c" else ctl.client
        o = off[who]
        ctl.send(src, o, len(raw), text=text + "\r\n")
        ctl.data(src, raw)
        ctl.recv(dst, o, len(raw), text=text + "\r\n")
        kind = "command" if who == "c" else "reply"
        for end, d in ((src, "out"), (dst, "in")):
            extra = dict(fields)
            ctl.event(end, kind, dir=d, offset=o, len=len(raw), text=text, **extra)
        off[who] += len(raw)

    if passive:
        line("c", "PASV", verb="PASV", arg="")
        line("s", f"227 Entering Passive Mode (127,0,0,1,{p1},{p2}).", code=227)
    else:
        line("c", f"PORT 127,0,0,1,{p1},{p2}", verb="PORT", arg=f"127,0,0,1,{p1},{p2}")
        line("s", "200 PORT command successful.", code=200)
    line("c", "RETR a.bin", verb="RETR", arg="a.bin")
    data = Conversation(client=data_client, server=data_server, t0=ctl.t + 0.01)
    data.seq = ctl.seq
    data.ends = {data_client: (1 if passive else 2, 2, "client" if passive else "server"),
                 data_server: (2 if passive else 1, 2, "server" if passive else "client")}
    data.handshake()
    sender = data_server if passive else data_client        # the server sends the file
    receiver = data_client if passive else data_server
    data.send(sender, 0, 5)
    data.data(sender, b"hello")
    data.recv(receiver, 0, 5)
    data.close_both(sender)
    data.recv(receiver, 5, 0)
    ctl.t = data.t
    line("s", "226 Transfer complete.", code=226)
    return ctl.events + data.events, ctl.packets + data.packets


@pytest.mark.parametrize("passive", [True, False])
def test_data_connection_attributed_to_its_commands(passive):
    events, packets = _session(passive)
    r = correlate(events, packets)
    data = [c for c in r.connections if c.channel == "data"]
    assert len(data) == 1
    conn = data[0]
    announce = "227 Entering" if passive else "PORT 127"
    assert len(conn.announced_by) == 2 and all(e["text"].startswith(announce)
                                               for e in conn.announced_by)
    assert [e["text"] for e in conn.used_by] == ["RETR a.bin", "RETR a.bin"]
    assert conn.has_handshake() and all(conn.fin_seen)
    for ev in conn.causes:
        assert r.connections_caused_by(ev) == [conn]
    retr = [e for e in events if e.get("verb") == "RETR"][0]
    assert r.segments_for(retr)[0].payload == b"RETR a.bin\r\n"
    assert r.coverage.trace_fraction == 1.0 and r.coverage.segment_fraction == 1.0
    assert "data connections: 1; with handshake, FINs from both sides and a cause: 1" \
        in r.summary()


def test_parse_announcement():
    assert parse_announcement("227", "227 Entering Passive Mode (127,0,0,1,195,80).") == \
        ("127.0.0.1", 195 * 256 + 80)
    assert parse_announcement("227", "227 =127,0,0,1,4,1") == ("127.0.0.1", 1025)
    assert parse_announcement("229", "229 Entering Extended Passive Mode (|||6446|)") == \
        (None, 6446)
    assert parse_announcement("PORT", "10,0,0,2,4,2") == ("10.0.0.2", 1026)
    assert parse_announcement("EPRT", "|2|::1|5282|") == ("::1", 5282)
    assert parse_announcement("EPRT", "|1|132.235.1.2|6275|") == ("132.235.1.2", 6275)
    assert parse_announcement("227", "227 nonsense") is None
    assert split_address("[::ffff:127.0.0.1]:21") == ("127.0.0.1", 21)


# --- reading capture files made elsewhere --------------------------------------

def _expected(segments):
    return [(s.src, s.sport, s.dst, s.dport, s.seq, s.ack, s.flags, s.len) for s in segments]


@pytest.mark.parametrize("link", ["ether", "sll", "null", "raw"])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_reads_pcap_and_pcapng_of_any_link_type(tmp_path, link, fmt):
    events, packets = _session(passive=True)
    framed = []
    for p in packets:
        if link == "ether":
            f = Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00") / p
        elif link == "sll":                 # tcpdump -i any on Linux
            f = CookedLinux(pkttype=0, lladdrtype=772, lladdrlen=6, proto=0x0800) / p
        elif link == "null":                # macOS lo0
            f = Loopback(type=2) / p
        else:
            f = p
        f.time = p.time
        framed.append(f)
    path = tmp_path / f"c.{fmt}"
    if fmt == "pcap":
        wrpcap(str(path), framed, linktype={"ether": 1, "sll": 113, "null": 0, "raw": 101}[link])
    else:
        with PcapNgWriter(str(path)) as w:
            for f in framed:
                w.write(f)
    segs = list(read_segments(path))
    assert _expected(segs) == _expected(correlate([], packets).segments)
    assert [round(s.t, 6) for s in segs] == [round(float(p.time), 6) for p in packets]
    r = correlate(events, path)
    assert r.coverage.trace_fraction == 1.0 and r.coverage.segment_fraction == 1.0


def test_truncated_capture_still_counts_payload(tmp_path):
    events, packets = _session(passive=False)
    path = tmp_path / "short.pcap"
    wrpcap(str(path), [Ether() / p for p in packets])
    from scapy.utils import RawPcapReader
    frames = [f for f, _ in RawPcapReader(str(path))]
    # wrpcap keeps whole frames; truncate them as tcpdump -s 60 would.
    path2 = tmp_path / "short2.pcap"
    from trace.capture import PcapWriter
    with PcapWriter(path2, snaplen=60) as w:
        for f, p in zip(frames, packets):
            w.write(f[:60], float(p.time), wirelen=len(f))
    r = correlate(events, path2)
    assert r.coverage.trace_fraction == 1.0 and r.coverage.segment_fraction == 1.0
    assert [s.len for s in r.segments] == [s.len for s in correlate([], packets).segments]
    assert any(len(s.payload) < s.len for s in r.segments)


def test_segment_describe():
    s = Segment(3, 1.0, "127.0.0.1", 40000, "127.0.0.1", 21, 10, 20, 0x18, 6)
    s.rel_seq, s.rel_ack = 1, 1
    assert s.describe() == "#3 127.0.0.1:40000 > 127.0.0.1:21 [PSH,ACK] seq=1 ack=1 len=6"


# --- the interleaved view --------------------------------------------------------

def _render(events, packets, **kw):
    from rich.console import Console
    from trace.segments import render_with_segments
    console = Console(record=True, width=220, color_system=None)
    console.print(render_with_segments(events, packets, **kw))
    return console.export_text().splitlines()


@pytest.mark.parametrize("passive", [True, False])
def test_render_with_segments_puts_each_segment_under_its_event(passive):
    events, packets = _session(passive)
    stray = IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=1, dport=2, flags="PA", seq=7,
                                                         ack=1) / b"??"
    stray.time = packets[-1].time + 1
    lines = _render(events, packets + [stray])
    assert "trace bytes in segments: 100.00%" in lines[0]
    numbered = [line for line in lines if re.search(r"#\d+ \d+→\d+ \[", line)]
    # Every segment once, the stray one flagged.
    assert sorted(int(re.search(r"#(\d+) ", l).group(1)) for l in numbered) == \
        list(range(1, len(packets) + 2))
    assert "not in the trace" in numbered[-1] and "seq=1 len=2" in numbered[-1]
    assert any("note:" in line and "no SYN" in line for line in lines[:3])

    def index(pattern):
        return next(i for i, line in enumerate(lines) if re.search(pattern, line))
    retr = index(r"→ RETR a.bin")
    assert re.search(r"\[PSH,ACK\] seq=\d+ ack=\d+ len=12$", lines[retr + 1].rstrip())
    connect = index(r"connect .*for RETR a.bin")
    assert "[SYN] seq=0 len=0" in lines[connect + 1]
    assert "[SYN,ACK] seq=0 ack=1 len=0" in lines[connect + 2]
    assert "[ACK] seq=1 ack=1 len=0" in lines[connect + 3]
    announce = index(r"227 Entering" if passive else r"→ PORT 127")
    assert "announces data connection" in lines[announce]
    send = index(r"send 5 bytes at offset 0")
    assert "len=5" in lines[send + 1]
    # The sender's close is followed by its FIN; the EOF recv by the other's.
    # The EOF recv is followed by the peer's FIN (no close events here).
    eof = index(r"recv: end of stream")
    assert "[FIN,ACK]" in lines[eof + 1] and "seq=6" in lines[eof + 1]
    assert sum(1 for line in lines if "not in the trace" in line) == 1


def test_render_limits_segments_per_event():
    cv = Conversation()
    cv.handshake()
    cv.send(cv.client, 0, 20 * 100)
    for _ in range(20):
        cv.data(cv.client, b"d" * 100)
    cv.recv(cv.server, 0, 2000)
    lines = _render(cv.events, cv.packets, max_segments=5, acks=False)
    assert sum(1 for line in lines if "len=100" in line) == 4
    assert any("… 16 more segments, 1600 payload bytes" in line for line in lines)


def test_the_shipped_sample_correlates_completely():
    from pathlib import Path
    import trace
    samples = Path(__file__).resolve().parent.parent / "trace" / "samples"
    r = correlate(trace.load(samples / "session.log"), samples / "capture.pcap")
    cov = r.coverage
    assert cov.trace_bytes > 1_000_000 and cov.trace_matched == cov.trace_bytes
    assert cov.segment_matched == cov.segment_bytes
    assert not cov.untraced_connections and not cov.uncaptured_ends and not r.notes
    data = [c for c in r.connections if c.channel == "data"]
    assert sum(1 for c in data if c.has_handshake() and all(c.fin_seen) and c.causes) == 4
    (reset,) = [c for c in data if c.reset]          # the get of the missing file
    assert [e.get("verb") for e in reset.used_by] == ["RETR", "RETR"]      # client and server
    lines = _render(trace.load(samples / "session.log"), samples / "capture.pcap")
    assert "100.00%" in lines[0]


def test_unreadable_captures_are_named_in_one_line(tmp_path):
    from trace.correlate import CaptureFileError
    log = tmp_path / "session.log"
    log.write_text('{"type":"header","t":1.0,"seq":0,"role":"server","pid":1,'
                   '"format":"ftpkit-trace","schema":1,"host":"h","start":1.0}\n')
    cases = {tmp_path / "nope.pcap": "no such file", tmp_path: "is a directory",
             log: "not a pcap or pcapng capture (it is a trace log (JSON Lines))"}
    for path, message in cases.items():
        with pytest.raises(CaptureFileError, match=re.escape(message)):
            correlate([], path)
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "trace.segments", str(log), "--pcap", str(log)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "not a pcap" in out.stderr


def test_trace_correlate_session_is_the_join():
    """``trace.correlate_session`` is the join, loaded on first use; the
    module ``trace.correlate`` keeps its names (``correlate``,
    ``read_segments``) for the callers that import them."""
    import trace
    import trace.correlate
    events, packets = _session(passive=True)
    r = trace.correlate_session(events, packets)
    assert r.coverage.trace_fraction == 1.0
    assert trace.correlate_session is trace.correlate.correlate is correlate
    assert trace.correlate.read_segments is read_segments


# --- retransmissions (issue 15) ----------------------------------------------------

def _lossy_transfer():
    """A sender's capture of 3000 bytes in three segments where the second
    was lost on the way: the receiver's duplicate ACKs ask for it again and
    the sender repeats it, so the capture holds it twice."""
    cv = Conversation()
    cv.handshake()
    sender, receiver = cv.server, cv.client
    send = cv.send(sender, 0, 3000)
    cv.data(sender, b"a" * 1000)
    cv.packet(receiver, "A")                                 # acknowledges 1000
    cv.data(sender, b"b" * 1000)                             # lost after the capture point
    cv.data(sender, b"c" * 1000)
    cv.packet(receiver, "A", ack=SISN + 1 + 1000)            # duplicate ACK: still 1000
    cv.packet(sender, "PA", seq=SISN + 1 + 1000, payload=b"b" * 1000)   # the repeat
    cv.packet(receiver, "A", ack=SISN + 1 + 3000)
    recv = cv.recv(receiver, 0, 3000)
    cv.close_both(sender)
    return cv, send, recv


def test_retransmitted_segment_marked_with_the_trace_bytes_it_repeats(tmp_path):
    cv, send, recv = _lossy_transfer()
    path = tmp_path / "lossy.pcap"
    wrpcap(str(path), [Ether() / p for p in cv.packets])     # a real capture file
    r = correlate(cv.events, path)
    data = [s for s in r.segments if s.len]
    assert [s.retransmission for s in data] == [False, False, False, True]
    assert [s.repeated for s in data] == [0, 0, 0, 1000]
    again = data[-1]
    assert again.rel_seq == 1001 and again.payload == b"b" * 1000
    (repeat,) = r.retransmissions
    assert (repeat.segment, repeat.start, repeat.end, repeat.bytes) == (again, 1000, 2000, 1000)
    assert repeat.events == [send, recv]
    assert r.retransmissions_of(send) == r.retransmissions_of(recv) == [repeat]
    cov = r.coverage
    # Counted once: 3000 distinct bytes, each in both ends' events.
    assert (cov.segment_bytes, cov.segment_matched) == (3000, 3000)
    assert (cov.trace_bytes, cov.trace_matched) == (6000, 6000)
    assert (cov.retransmitted_segments, cov.retransmitted_bytes) == (1, 1000)
    assert "retransmitted: 1 segments, 1000 payload bytes" in cov.summary()
    assert again in r.segments_for(send) and again in r.segments_for(recv)
    lines = _render(cv.events, path)
    assert "1 retransmitted segments" in lines[0]
    assert sum(1 for line in lines if "retransmission of 1000 bytes" in line) == 1


def _reordered_transfer():
    """3000 bytes whose third segment overtook its second on the way (loopback
    does this when the two are handled on different CPUs): the second then
    arrives below bytes already seen, new all the same."""
    cv = Conversation()
    cv.handshake()
    sender, receiver = cv.server, cv.client
    send = cv.send(sender, 0, 3000)
    cv.data(sender, b"a" * 1000)
    cv.packet(sender, "PA", seq=SISN + 1 + 2000, payload=b"c" * 1000)   # overtakes
    cv.packet(sender, "PA", seq=SISN + 1 + 1000, payload=b"b" * 1000)
    cv.next[sender] += 3000 - 1000
    cv.packet(receiver, "A", ack=SISN + 1 + 3000)
    recv = cv.recv(receiver, 0, 3000)
    cv.close_both(sender)
    return cv, send, recv


def test_a_segment_overtaken_by_a_later_one_is_out_of_order_not_a_retransmission():
    cv, send, recv = _reordered_transfer()
    r = correlate(cv.events, cv.packets)
    data = [s for s in r.segments if s.len]
    assert [s.rel_seq for s in data] == [1, 2001, 1001]
    assert [s.out_of_order for s in data] == [False, False, True]
    assert not any(s.retransmission for s in data) and not r.retransmissions
    assert r.coverage.segment_bytes == r.coverage.segment_matched == 3000
    assert r.segments_for(send) == data == r.segments_for(recv)
    # A repeat is a retransmission, never out of order, wherever it falls.
    lossy, _, _ = _lossy_transfer()
    assert not any(s.out_of_order for s in correlate(lossy.events, lossy.packets).segments)
    shown = [line for line in _render(cv.events, cv.packets) if "out of order" in line]
    assert len(shown) == 1 and f"#{data[2].number} " in shown[0] and "retransmission" not in shown[0]


def test_a_repeated_syn_and_fin_are_retransmissions_without_payload():
    cv = Conversation()
    cv.packet(cv.client, "S", ack=0)
    cv.packet(cv.client, "S", ack=0)                        # the SYN-ACK was slow
    cv.next[cv.client] += 1
    cv.packet(cv.server, "SA")
    cv.next[cv.server] += 1
    cv.packet(cv.client, "A")
    cv.fin(cv.client)
    cv.packet(cv.client, "FA", seq=cv.next[cv.client] - 1)  # the FIN again
    r = correlate([], cv.packets)
    assert [s.retransmission for s in r.segments] == [False, True, False, False, False, True]
    assert r.coverage.retransmitted_bytes == 0 and not r.retransmissions
    (conn,) = r.connections
    assert len(r.connections) == 1 and conn.has_handshake()


def test_a_reused_address_pair_with_a_new_syn_is_a_new_connection():
    first = Conversation()
    first.handshake()
    first.close_both(first.client)
    second = Conversation(cisn=CISN + 777_777, sisn=SISN + 5, t0=first.t + 1)
    second.handshake()
    r = correlate([], first.packets + second.packets)
    assert len(r.connections) == 2
    assert [len(c.segments) for c in r.connections] == [7, 3]


# --- a capture of another session (issue 10) --------------------------------------

def _other_session():
    other = Conversation(client=("127.0.0.1", 41234), server=("127.0.0.1", 2222))
    other.handshake()
    other.data(other.server, b"220 someone else\r\n")
    other.close_both(other.client)
    return other.packets


def test_a_capture_of_another_session_matches_nothing_instead_of_everything():
    cv = Conversation()
    cv.handshake()
    cv.send(cv.client, 0, 100)
    cv.data(cv.client, b"x" * 100)
    cv.recv(cv.server, 0, 100)
    r = correlate(cv.events, _other_session())
    cov = r.coverage
    assert not cov.holds_session and cov.matched_ends == 0
    assert cov.trace_fraction == 0.0 and cov.segment_fraction == 0.0
    # The trace's bytes are all missing from the capture, and listed.
    assert (cov.trace_bytes, cov.trace_matched, cov.segment_bytes) == (200, 0, 0)
    assert [(e["type"], s, e2) for e, s, e2 in cov.unmatched_trace] == [("send", 0, 100),
                                                                         ("recv", 0, 100)]
    assert cov.warning().startswith("the capture holds none of the trace's 2 connection ends")
    assert cov.summary().splitlines()[0] == cov.warning()
    lines = _render(cv.events, _other_session())
    assert "(nothing matched)" in lines[0] and "100.00%" not in lines[0]
    assert lines[1].startswith("warning: the capture holds none")
    # Nothing to count but the session is there (an empty file): complete.
    empty = Conversation()
    empty.handshake()
    empty.close_both(empty.server)
    r = correlate(empty.events, empty.packets)
    assert r.coverage.holds_session and r.coverage.trace_fraction == 1.0


def test_view_of_a_capture_of_another_session_warns(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    samples = Path(__file__).resolve().parent.parent / "trace" / "samples"
    other = tmp_path / "other.pcap"
    wrpcap(str(other), [Ether() / p for p in _other_session()])
    out = subprocess.run([sys.executable, "-m", "trace.view", str(samples / "session.log"),
                          "--pcap", str(other)], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    head = out.stdout.splitlines()[:2]
    assert "0.00%" in head[0] and "100.00%" not in head[0] and "nothing matched" in head[0]
    assert "warning: the capture holds none of the trace's" in head[1]


def test_a_connection_missing_from_the_capture_lowers_the_coverage():
    """Two connections traced, one captured: half the trace's bytes are
    missing, not 100% of the half that is there."""
    first = Conversation()
    first.handshake()
    first.send(first.client, 0, 100)
    first.data(first.client, b"x" * 100)
    first.recv(first.server, 0, 100)
    second = Conversation(client=("127.0.0.1", 40001), t0=first.t + 1)
    second.ends = {second.client: (1, 2, "client"), second.server: (2, 8, "server")}
    second.handshake()
    second.send(second.client, 0, 100)
    second.data(second.client, b"y" * 100)
    second.recv(second.server, 0, 100)
    r = correlate(first.events + second.events, first.packets)
    cov = r.coverage
    assert cov.holds_session and cov.matched_ends == 2 and len(cov.uncaptured_ends) == 2
    assert (cov.trace_bytes, cov.trace_matched) == (400, 200) and cov.trace_fraction == 0.5
    assert cov.segment_fraction == 1.0
