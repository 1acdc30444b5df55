"""A 10 MiB get in each network scenario: time, retransmissions, correlation.

    python bench/bench_netns.py                 # 3 rounds per scenario (needs root)
    python bench/bench_netns.py --rounds 1 --size 2MiB

For each scenario of trace/netns.py (clean, lossy 5% both ways, slow at
20mbit, nat) it runs the get between the namespaces, traced and captured on
the router-server cable, and prints per round: the client's transfer time,
the segments the capture carried twice, the packets the loss rule dropped,
the rate the receiver acknowledged, the correlation coverage both ways
(trace.correlate), and the packets tcpdump itself missed (when not 0, the
capture, not the network, explains a coverage below 100%). Behind NAT the figures are for the passive get (the
active one fails with 425, as it should). No scenario adds delay: this
kernel has no netem.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trace import netns, netsession  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="10MiB")
    parser.add_argument("--scenarios", default="clean,lossy,slow,nat")
    args = parser.parse_args(argv)
    reason = netns.why_not()
    if reason:
        print(f"bench_netns: {reason}; nothing measured")
        return 2
    size = netsession.parse_size(args.size)
    print(f"a {args.size} get, {args.rounds} rounds per scenario; no added delay (no netem)")
    print(f"{'scenario':<10}{'round':>6}{'time s':>9}{'Mbit/s':>9}{'sent again':>12}{'dropped':>9}"
          f"{'ACKed Mbit/s':>14}{'trace→cap':>11}{'cap→trace':>11}{'missed':>8}  verdicts")
    with tempfile.TemporaryDirectory(prefix="ftpkit-bench-netns-") as tmp:
        for name in args.scenarios.split(","):
            scenario = netns.scenario(name)
            times = []
            for round_ in range(1, args.rounds + 1):
                log, pcap = Path(tmp, f"{name}.log"), Path(tmp, f"{name}.pcap")
                recording = netsession.record_in_network(log, pcap, scenario, size, workdir=tmp)
                m = netsession.measure(log, pcap)
                get = m.transfers[0]
                times.append(get.seconds)
                print(f"{name:<10}{round_:>6}{get.seconds:>9.3f}{8 * get.bytes / get.seconds / 1e6:>9.1f}"
                      f"{m.retransmitted:>12}{sum(recording.dropped.values()):>9}"
                      f"{m.delivered_rate / 1e6:>14.1f}{100 * m.trace_coverage:>10.2f}%"
                      f"{100 * m.capture_coverage:>10.2f}%{recording.missed:>8}  {','.join(t.verdict for t in m.transfers)}")
            if len(times) > 1:
                print(f"{name:<10}{'median':>6}{statistics.median(times):>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
