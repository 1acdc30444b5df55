"""How fast and how complete the trace/capture correlation is.

    python bench/bench_correlate.py                # coverage of 10 MiB get/put + 256 MiB timing
    python bench/bench_correlate.py --size-mib 64  # a smaller big transfer
    python bench/bench_correlate.py --synthetic    # no capture privileges: a generated capture

Live (as root, or with CAP_NET_RAW): records real sessions of the reference
server and client with their captures, then

1. for a 10 MiB get and a 10 MiB put, in passive and in active mode, prints
   the coverage both ways (trace bytes found in segments, segment payload
   bytes found in the trace);
2. for a get of a 256 MiB file, prints how long correlation takes: reading
   the capture, reading the trace, and the join, separately and together.

``--synthetic`` writes a capture and a trace of a 256 MiB transfer itself
(64 KiB segments as on Linux loopback, one ACK per two segments, 4 MiB
sendfile blocks on one side and 64 KiB reads on the other) and times the
same steps; it needs no privileges.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))          # the kit's trace package, not the stdlib's

import trace  # noqa: E402
from trace.capture import can_capture, why_not  # noqa: E402
from trace.correlate import correlate, read_segments  # noqa: E402
from trace.pcap import PcapWriter  # noqa: E402
from trace.record import record, run_session  # noqa: E402

MiB = 1 << 20


def coverage_runs(tmp: Path) -> None:
    print("coverage of a 10 MiB get and a 10 MiB put (live capture on loopback)")
    print(f"{'mode':8} {'trace bytes':>13} {'in segments':>13} {'segment bytes':>14} "
          f"{'in trace':>13} {'data conns ok':>14} {'drops':>6}")
    for active in (False, True):
        log, pcap = tmp / f"cov-{active}.log", tmp / f"cov-{active}.pcap"
        script = ["get big.bin", "put up.bin", "quit"]
        rec = record(log, pcap, run=lambda log: run_session(
            log, script, {"big.bin": 10 * MiB}, {"up.bin": os.urandom(10 * MiB)}, active=active),
            say=None)
        if rec.session.client_status != 0:
            print(rec.session.client_output)
            raise SystemExit("the session failed")
        r = correlate(trace.load(log), pcap)
        c = r.coverage
        data = [x for x in r.connections if x.channel == "data"]
        ok = sum(1 for x in data if x.has_handshake() and all(x.fin_seen) and x.causes)
        print(f"{'active' if active else 'passive':8} {c.trace_bytes:13d} "
              f"{100 * c.trace_fraction:12.2f}% {c.segment_bytes:14d} {100 * c.segment_fraction:12.2f}% "
              f"{ok:>7d} of {len(data):<3d} {rec.capture.dropped:6d}")
        if c.unmatched_trace or c.unmatched_segments:
            print(c.summary())


def timing(log: Path, pcap: Path, label: str) -> None:
    size = pcap.stat().st_size
    t0 = time.perf_counter()
    segments = list(read_segments(pcap))
    t1 = time.perf_counter()
    events = list(trace.load(log))
    t2 = time.perf_counter()
    result = correlate(events, segments)
    t3 = time.perf_counter()
    again = correlate(trace.load(log), pcap)
    t4 = time.perf_counter()
    c = result.coverage
    print(f"correlation of {label}: capture {size / MiB:.1f} MiB, {len(segments)} segments, "
          f"{len(events)} trace events")
    print(f"  read capture   {t1 - t0:7.3f} s")
    print(f"  read trace     {t2 - t1:7.3f} s")
    print(f"  join           {t3 - t2:7.3f} s")
    print(f"  all (correlate(trace.load(log), pcap)) {t4 - t3:7.3f} s")
    t5 = time.perf_counter()
    dissected = scapy_segments(pcap)
    t6 = time.perf_counter()
    print(f"  read capture with scapy's dissection instead {t6 - t5:7.3f} s "
          f"({dissected} TCP packets; the kit parses headers itself)")
    print(f"  coverage: trace {100 * c.trace_fraction:.2f}% of {c.trace_bytes}, "
          f"segments {100 * c.segment_fraction:.2f}% of {c.segment_bytes}; "
          f"same result again: {again.coverage == c}; "
          f"retransmitted segments: {c.retransmitted_segments}")


def scapy_segments(pcap: Path) -> int:
    """What reading the capture would cost with scapy dissecting every packet
    (the measure for keeping trace.tcp's own header parsing)."""
    from scapy.layers.inet import TCP
    from scapy.utils import PcapReader
    count = 0
    with PcapReader(str(pcap)) as reader:
        for pkt in reader:
            if TCP in pkt:
                tcp = pkt[TCP]
                count += bool((tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.flags))
    return count


def live_big(tmp: Path, size: int) -> None:
    log, pcap = tmp / "big.log", tmp / "big.pcap"
    t0 = time.perf_counter()
    rec = record(log, pcap, run=lambda log: run_session(
        log, ["get big.bin", "quit"], {"big.bin": size}, timeout=600), say=None)
    print(f"recorded a get of {size / MiB:.0f} MiB with its capture in "
          f"{time.perf_counter() - t0:.1f} s ({rec.capture.kept} segments kept, "
          f"{rec.capture.dropped} dropped by the kernel)")
    timing(log, pcap, f"a {size / MiB:.0f} MiB get (live)")


def synthetic_big(tmp: Path, size: int) -> None:
    """A capture and a trace of one download of ``size`` bytes, written directly."""
    log, pcap = tmp / "syn.log", tmp / "syn.pcap"
    cli, srv = ("127.0.0.1", 40000), ("127.0.0.1", 50000)
    mss, block, rbuf = 65483, 4 * MiB, 65536
    payload = bytes(mss)
    t = time.time()

    def frame(src, dst, flags, seq, ack, n=0):
        tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                          5 << 4, flags, 65535, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + n, 0, 0x4000, 64, 6, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        return b"\0" * 12 + b"\x08\x00" + ip + tcp + payload[:n]

    events = []
    seqno = iter(range(1 << 30))

    def ev(role, pid, conn, type, local, remote, **f):
        events.append(dict(type=type, t=round(t, 6), seq=next(seqno), role=role, pid=pid,
                           conn=conn, channel="data", local=f"{local[0]}:{local[1]}",
                           remote=f"{remote[0]}:{remote[1]}", **f))
    ci, si = 1000, 2_000_000_000
    with PcapWriter(pcap) as w:
        w.write(frame(cli, srv, 0x02, ci, 0), t)
        w.write(frame(srv, cli, 0x12, si, ci + 1), t)
        w.write(frame(cli, srv, 0x10, ci + 1, si + 1), t)
        ev("client", 1, 1, "connect", cli, srv)
        ev("server", 2, 1, "accept", srv, cli, listener=0)
        for off in range(0, size, block):
            ev("server", 2, 1, "send", srv, cli, dir="out", offset=off, len=min(block, size - off))
        sent = acked = 0
        n_seg = 0
        read = 0
        while sent < size:
            n = min(mss, size - sent)
            t += 0.00002
            w.write(frame(srv, cli, 0x18, si + 1 + sent, ci + 1, n), t, wirelen=54 + n)
            sent += n
            n_seg += 1
            if n_seg % 2 == 0 or sent == size:
                w.write(frame(cli, srv, 0x10, ci + 1, si + 1 + sent), t)
            while read + rbuf <= sent or (sent == size and read < size):
                k = min(rbuf, size - read)
                ev("client", 1, 1, "recv", cli, srv, dir="in", offset=read, len=k)
                read += k
        w.write(frame(srv, cli, 0x11, si + 1 + size, ci + 1), t)
        ev("client", 1, 1, "recv", cli, srv, dir="in", offset=size, len=0)
        w.write(frame(cli, srv, 0x11, ci + 1, si + 2 + size), t)
        w.write(frame(srv, cli, 0x10, si + 2 + size, ci + 2), t)
    with open(log, "w") as f:
        f.write(json.dumps({"type": "header", "t": t, "seq": 0, "role": "server", "pid": 2,
                            "format": "ftpkit-trace", "schema": 1, "host": "bench", "start": t})
                + "\n")
        for e in events:
            f.write(json.dumps(e, separators=(",", ":")) + "\n")
    timing(log, pcap, f"a {size / MiB:.0f} MiB transfer (synthetic capture)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--synthetic", action="store_true",
                        help="generate the big capture instead of recording it")
    parser.add_argument("--no-coverage", action="store_true", help="skip the 10 MiB runs")
    args = parser.parse_args()
    live = can_capture() and (ROOT / "solutions" / "client.py").exists()
    if not live and not args.synthetic:
        print(f"no live capture ({why_not() or 'no reference client'}); using --synthetic")
        args.synthetic = True
    with tempfile.TemporaryDirectory(prefix="ftpkit-bench-") as tmp:
        tmp = Path(tmp)
        if live and not args.no_coverage:
            coverage_runs(tmp)
            print()
        if args.synthetic:
            synthetic_big(tmp, args.size_mib * MiB)
        else:
            live_big(tmp, args.size_mib * MiB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
