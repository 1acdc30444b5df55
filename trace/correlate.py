"""Correlate a trace with a packet capture: the entry point and its command line.

    python -m trace.correlate session.log capture.pcap                 # coverage both ways
    python -m trace.correlate session.log capture.pcap --annotate annotated.pcapng

The work is done in layers, one job a module:

* :mod:`trace.pcap` reads pcap/pcapng files and writes pcap and pcapng;
* :mod:`trace.tcp` parses IP and TCP headers into :class:`Segment` objects;
* :mod:`trace.announce` reads PASV/EPSV replies and PORT/EPRT commands;
* :mod:`trace.intervals` does the sequence-number and range arithmetic;
* :mod:`trace.join` is the join itself, in named phases, filling in
  the result types of :mod:`trace.results`;
* :mod:`trace.annotate` writes a capture back with a comment on every frame.

This module gathers their public names, so ``from trace.correlate import
correlate, read_segments`` keeps working, and adds the command line.
"""

from __future__ import annotations

import argparse
import sys

from .addresses import join_address, split_address
from .announce import TRANSFER_VERBS, parse_announcement
from .join import correlate
from .pcap import CaptureFileError, read_segments, segments_from_packets
from .results import Connection, Correlation, Coverage, Retransmission
from .tcp import Segment, flag_names, parse_frame

__all__ = [
    "Segment", "Connection", "Coverage", "Correlation", "Retransmission", "correlate",
    "read_segments", "segments_from_packets", "parse_frame", "flag_names",
    "parse_announcement", "split_address", "join_address", "CaptureFileError",
    "TRANSFER_VERBS", "annotate", "main",
]


def annotate(events, packets_path, out_path):
    """Write ``packets_path`` to ``out_path`` as pcapng with a comment on
    every frame (see :func:`trace.annotate.annotate`)."""
    from .annotate import annotate as write_annotated
    return write_annotated(events, packets_path, out_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trace.correlate",
        description="Match a trace log to a packet capture of the same session: coverage "
                    "both ways, and optionally a pcapng with the trace's view on every frame.")
    parser.add_argument("log", help="trace log")
    parser.add_argument("capture", help="capture (pcap or pcapng)")
    parser.add_argument("--annotate", metavar="OUT.pcapng",
                        help="write the capture here with a comment on every frame "
                             "(Wireshark shows it; tshark -e frame.comment)")
    args = parser.parse_args(argv)
    from .reader import TraceError, load
    try:
        events = list(load(args.log))
        if args.annotate:
            result = annotate(events, args.capture, args.annotate)
        else:
            result = correlate(events, args.capture)
    except (CaptureFileError, TraceError) as err:
        print(err, file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    print(result.summary())
    if args.annotate:
        print(f"annotated capture written to {args.annotate}")
    return 0 if result.coverage.holds_session else 1


if __name__ == "__main__":
    sys.exit(main())
