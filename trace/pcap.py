"""Capture files: reading pcap and pcapng, writing pcap and annotated pcapng.

Reading uses scapy's raw readers (:class:`scapy.utils.RawPcapReader`
picks pcap or pcapng by the file's magic number and handles both byte
orders and every timestamp resolution); the frames are then parsed by
:func:`trace.tcp.parse_frame`, a few struct unpacks per frame, because
scapy's full dissection of each packet is several times slower on a
capture of a large transfer (see ``bench/bench_correlate.py``).

Each frame keeps its timestamp exactly, as an integer count of ticks at
its file's resolution, so that a file written back (:class:`PcapNgWriter`,
used to annotate a capture) has the same timestamps to the nanosecond.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Iterable, Iterator

from .tcp import Segment, parse_frame, parse_ip

__all__ = ["CaptureFileError", "Frame", "read_frames", "read_segments", "segments_from_packets",
           "as_segments", "PcapWriter", "PcapNgWriter", "PAYLOAD_KEPT", "SNAPLEN"]

SNAPLEN = 262144            # what libpcap and Wireshark use as "whole packet"
# How many payload bytes a segment read from a file keeps (enough for any
# control-channel line; a capture of a large transfer is not held in memory).
PAYLOAD_KEPT = 1024


class CaptureFileError(ValueError):
    """A capture file cannot be read; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame as the file holds it."""

    number: int             # 1-based, counting every frame, as Wireshark does
    linktype: int           # LINKTYPE_ number of its interface
    ticks: int              # timestamp, in 1/resolution seconds since the epoch
    resolution: int         # ticks per second (10**6 for classic pcap)
    data: bytes             # the captured bytes (maybe fewer than on the wire)
    wirelen: int            # the frame's length on the wire

    @property
    def t(self) -> float:
        return self.ticks / self.resolution


def _open(name: str):
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapReader
    try:
        return RawPcapReader(name)                # picks the pcapng reader by magic
    except FileNotFoundError:
        raise CaptureFileError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise CaptureFileError(f"{name}: is a directory, not a capture") from None
    except OSError as err:
        raise CaptureFileError(f"{name}: {err.strerror or err}") from None
    except Scapy_Exception:
        with open(name, "rb") as f:
            head = f.read(64)
        what = "a trace log (JSON Lines)" if head.lstrip().startswith(b"{") else \
            "empty" if not head else "something else"
        raise CaptureFileError(f"{name}: not a pcap or pcapng capture (it is {what})") from None


def read_frames(path: str | os.PathLike) -> Iterator[Frame]:
    """Yield every frame of a pcap or pcapng file, in file order."""
    from scapy.utils import RawPcapNgReader

    name = os.fspath(path)
    reader = _open(name)
    try:
        is_ng = isinstance(reader, RawPcapNgReader)
        linktype = getattr(reader, "linktype", None)
        resolution = 10**9 if getattr(reader, "nano", False) else 10**6
        number = 0
        while True:
            try:
                data, meta = reader._read_packet(size=1 << 20)
            except EOFError:
                break
            if data is None:
                continue
            number += 1
            if is_ng:
                yield Frame(number, meta.linktype, (meta.tshigh << 32) | meta.tslow,
                            int(meta.tsresol), data, meta.wirelen)
            else:
                yield Frame(number, linktype, meta.sec * resolution + meta.usec, resolution,
                            data, meta.wirelen)
    finally:
        reader.close()


def read_segments(path: str | os.PathLike, keep_payload: int = PAYLOAD_KEPT) -> Iterator[Segment]:
    """Yield the TCP segments of a pcap or pcapng file, in capture order.

    Frames that are not TCP are skipped but still counted in the frame
    numbers, which therefore match Wireshark's. Each segment keeps at most
    ``keep_payload`` bytes of its payload (``len`` is always whole).
    """
    for frame in read_frames(path):
        parsed = parse_frame(frame.data, frame.linktype)
        if parsed is None:
            continue
        src, sport, dst, dport, seq, ack, flags, length, payload = parsed
        if len(payload) > keep_payload:
            payload = payload[:keep_payload]
        yield Segment(frame.number, frame.t, src, sport, dst, dport, seq, ack, flags, length,
                      payload)


def segments_from_packets(packets) -> Iterator[Segment]:
    """Segments from scapy packets (a list, a ``PacketList`` or ``rdpcap`` result)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    for number, pkt in enumerate(packets, 1):
        if IP in pkt:
            raw, ethertype = bytes(pkt[IP]), 0x0800
        elif IPv6 in pkt:
            raw, ethertype = bytes(pkt[IPv6]), 0x86DD
        else:
            continue
        if TCP not in pkt:
            continue
        parsed = parse_ip(raw, 0, ethertype)
        if parsed is None:
            continue
        src, sport, dst, dport, seq, ack, flags, length, payload = parsed
        yield Segment(number, float(pkt.time), src, sport, dst, dport, seq, ack, flags,
                      length, payload)


def as_segments(packets) -> Iterable[Segment]:
    """Segments from a capture path, scapy packets or segments."""
    if isinstance(packets, (str, os.PathLike)):
        return read_segments(packets)
    packets = iter(packets)
    try:
        first = next(packets)
    except StopIteration:
        return iter(())

    def chained():
        yield first
        yield from packets
    if isinstance(first, Segment):
        return chained()
    return segments_from_packets(chained())


# --- writing -----------------------------------------------------------------------

class _Writer:
    """A capture file being written: closed once, usable in ``with``."""

    _f = None

    def close(self) -> None:
        if self._f is not None and not self._f.closed:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PcapWriter(_Writer):
    """A minimal writer of classic pcap (microsecond timestamps)."""

    def __init__(self, path, linktype: int = 1, snaplen: int = SNAPLEN):
        self.path = os.fspath(path)
        self._f = open(self.path, "wb")
        self._f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        self.count = 0

    def write(self, frame: bytes, t: float, wirelen: int | None = None) -> None:
        sec = int(t)
        usec = int(round((t - sec) * 1e6))
        if usec >= 1000000:
            sec, usec = sec + 1, usec - 1000000
        self._f.write(struct.pack("<IIII", sec, usec, len(frame), wirelen or len(frame)))
        self._f.write(frame)
        self.count += 1


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _padded(value)


def _tsresol(resolution: int) -> bytes:
    """The ``if_tsresol`` byte: 10**-k seconds as k, 2**-k as 0x80 | k."""
    power, value = 0, 1
    while value < resolution:
        power, value = power + 1, value * 10
    if value == resolution:
        return bytes([power])
    if resolution & (resolution - 1) == 0:
        return bytes([0x80 | (resolution.bit_length() - 1)])
    raise ValueError(f"a timestamp resolution of 1/{resolution} s has no pcapng form")


class PcapNgWriter(_Writer):
    """A writer of pcapng (little-endian) whose frames may carry a comment.

    Each frame's link type and timestamp resolution are kept: an interface
    description block is written for each pair as it first appears, so a
    :class:`Frame` read from any capture is written back exactly, with the
    comment Wireshark shows as ``frame.comment`` (``opt_comment``).
    """

    def __init__(self, path, snaplen: int = SNAPLEN):
        self.path = os.fspath(path)
        self.snaplen = snaplen
        self._interfaces: dict[tuple[int, int], int] = {}
        self._f = open(self.path, "wb")
        body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)        # byte order, v1.0, unknown length
        self._block(0x0A0D0D0A, body + _option(4, b"ftpkit trace.correlate --annotate")
                    + _option(0, b""))
        self.count = 0

    def _block(self, kind: int, body: bytes) -> None:
        length = 12 + len(body)
        self._f.write(struct.pack("<II", kind, length) + body + struct.pack("<I", length))

    def _interface(self, linktype: int, resolution: int) -> int:
        key = (linktype, resolution)
        if key not in self._interfaces:
            options = b""
            if resolution != 10**6:
                options = _option(9, _tsresol(resolution)) + _option(0, b"")
            self._block(1, struct.pack("<HHI", linktype, 0, self.snaplen) + options)
            self._interfaces[key] = len(self._interfaces)
        return self._interfaces[key]

    def write(self, frame: Frame, comment: str | None = None) -> None:
        interface = self._interface(frame.linktype, frame.resolution)
        body = struct.pack("<IIIII", interface, frame.ticks >> 32, frame.ticks & 0xFFFFFFFF,
                           len(frame.data), frame.wirelen) + _padded(frame.data)
        if comment:
            body += _option(1, comment.encode("utf-8")) + _option(0, b"")
        self._block(6, body)
        self.count += 1
