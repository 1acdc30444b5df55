"""TCP segments: the packets of a capture, reduced to what correlation needs.

:func:`parse_frame` reads the IP and TCP headers of one captured frame of
any common link type by hand (a few struct unpacks, no dissection), which
keeps reading a capture of a large transfer fast; :class:`Segment` holds
what it found, and, once :func:`trace.join.correlate` has run, where the
segment fits in its connection.
"""

from __future__ import annotations

import socket
import struct

from .addresses import join_address, normal_host

__all__ = ["Segment", "parse_frame", "parse_ip", "flag_names",
           "FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"]

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
_FLAG_NAMES = ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"),
               (URG, "URG"), (ECE, "ECE"), (CWR, "CWR"))


def flag_names(flags: int) -> str:
    """``"SYN,ACK"`` for the TCP flags byte 0x12 (empty string for none)."""
    return ",".join(name for bit, name in _FLAG_NAMES if flags & bit)


class Segment:
    """One TCP segment from a capture.

    Read from the capture: ``number`` (frame number, 1-based, as Wireshark
    counts), ``t`` (epoch seconds), ``src``/``sport``, ``dst``/``dport``,
    ``seq``/``ack`` (absolute), ``flags`` (the TCP flags byte), ``len``
    (payload bytes, from the IP length, so a truncated capture still counts
    right) and ``payload`` (the captured payload bytes, possibly truncated).

    Filled in by the correlation: ``connection``, ``direction`` (0: the
    client's, 1: the server's), ``rel_seq``/``rel_ack`` (relative sequence
    and acknowledgement numbers, Wireshark style), ``offset`` (stream offset
    of the first payload byte), ``kind`` (``syn``, ``syn-ack``, ``ack``,
    ``data``, ``fin``, ``rst``), ``phase`` (``open``, ``data``, ``ack``,
    ``close``), ``events`` (events whose bytes it carries, or, for a FIN,
    the zero-length ``recv`` that saw it), ``acks`` (for a pure ACK, the
    events whose last byte it acknowledges), ``retransmission`` (it repeats
    a SYN, a FIN or payload bytes already seen in its direction),
    ``repeated`` (how many of its payload bytes were already seen) and
    ``out_of_order`` (its payload bytes are all new but start below bytes
    already seen: it arrived after later ones, as on loopback when a
    sender's segments are handed over on different CPUs, or it repeats a
    segment the capture never saw).
    """

    __slots__ = ("number", "t", "src", "sport", "dst", "dport", "seq", "ack", "flags",
                 "len", "payload", "connection", "direction", "rel_seq", "rel_ack",
                 "offset", "kind", "phase", "events", "acks", "retransmission", "repeated",
                 "out_of_order")

    def __init__(self, number, t, src, sport, dst, dport, seq, ack, flags, length,
                 payload=b""):
        self.number, self.t = number, t
        self.src, self.sport, self.dst, self.dport = src, sport, dst, dport
        self.seq, self.ack, self.flags, self.len = seq, ack, flags, length
        self.payload = payload
        self.connection = None
        self.direction = None
        self.rel_seq = self.rel_ack = self.offset = None
        self.kind = self.phase = None
        self.events: list = []
        self.acks: list = []
        self.retransmission = False
        self.repeated = 0
        self.out_of_order = False

    @property
    def flag_text(self) -> str:
        return flag_names(self.flags)

    @property
    def source(self) -> str:
        return join_address(self.src, self.sport)

    @property
    def destination(self) -> str:
        return join_address(self.dst, self.dport)

    def describe(self) -> str:
        """One line, tcpdump-like: ``#5 127.0.0.1:40000 > 127.0.0.1:2121 [PSH,ACK] seq=1 ack=1 len=6``."""
        seq = self.rel_seq if self.rel_seq is not None else self.seq
        ack = self.rel_ack if self.rel_ack is not None else self.ack
        text = f"#{self.number} {self.source} > {self.destination} [{self.flag_text}] seq={seq}"
        if self.flags & ACK:
            text += f" ack={ack}"
        return text + f" len={self.len}"

    def __repr__(self):
        return f"<Segment {self.describe()}>"


# Link-layer types (the numbers of pcap's LINKTYPE_ registry).
ETHERNET, NULL, LOOP, LINUX_SLL, LINUX_SLL2 = 1, 0, 108, 113, 276
RAW_IP = (101, 12, 14, 228, 229)


def parse_frame(frame: bytes, linktype: int):
    """Parse one captured frame; returns the TCP header fields or ``None``.

    The result is ``(src, sport, dst, dport, seq, ack, flags, payload_len,
    payload)``. Link types: Ethernet (1, with 802.1Q tags), BSD loopback
    (0 and 108, what macOS ``lo0`` gives), raw IP (101, 12, 14, 228, 229)
    and Linux cooked capture (113, 276, what ``tcpdump -i any`` gives).
    """
    if linktype == ETHERNET:
        pos = 12
        ethertype = int.from_bytes(frame[12:14], "big")
        while ethertype in (0x8100, 0x88A8, 0x9100):          # VLAN tags
            pos += 4
            ethertype = int.from_bytes(frame[pos:pos + 2], "big")
        pos += 2
    elif linktype in (NULL, LOOP):                            # BSD/macOS loopback
        if len(frame) < 4:
            return None
        family = struct.unpack("<I" if linktype == NULL else ">I", frame[:4])[0]
        if linktype == NULL and family > 0xFFFF:              # written on a big-endian host
            family = struct.unpack(">I", frame[:4])[0]
        ethertype = 0x0800 if family == 2 else 0x86DD if family in (10, 24, 28, 30) else 0
        pos = 4
    elif linktype in RAW_IP:
        pos = 0
        ethertype = 0x0800 if frame[:1] and frame[0] >> 4 == 4 else 0x86DD
    elif linktype == LINUX_SLL:
        ethertype, pos = int.from_bytes(frame[14:16], "big"), 16
    elif linktype == LINUX_SLL2:
        ethertype, pos = int.from_bytes(frame[0:2], "big"), 20
    else:
        return None
    return parse_ip(frame, pos, ethertype)


def parse_ip(frame: bytes, pos: int, ethertype: int):
    """The TCP fields of the IPv4 (0x0800) or IPv6 (0x86DD) packet at
    ``frame[pos:]``, as :func:`parse_frame` returns them, or ``None``."""
    if ethertype == 0x0800:
        if len(frame) < pos + 20:
            return None
        ihl = (frame[pos] & 0x0F) * 4
        total = int.from_bytes(frame[pos + 2:pos + 4], "big")
        frag = int.from_bytes(frame[pos + 6:pos + 8], "big")
        if frame[pos + 9] != 6 or frag & 0x1FFF:              # not TCP, or a later fragment
            return None
        src = socket.inet_ntop(socket.AF_INET, frame[pos + 12:pos + 16])
        dst = socket.inet_ntop(socket.AF_INET, frame[pos + 16:pos + 20])
        if total == 0:                                        # TSO: length left to the NIC
            total = len(frame) - pos
        tcp = pos + ihl
        ip_end = pos + total
    elif ethertype == 0x86DD:
        if len(frame) < pos + 40:
            return None
        plen = int.from_bytes(frame[pos + 4:pos + 6], "big")
        nxt = frame[pos + 6]
        src = normal_host(socket.inet_ntop(socket.AF_INET6, frame[pos + 8:pos + 24]))
        dst = normal_host(socket.inet_ntop(socket.AF_INET6, frame[pos + 24:pos + 40]))
        tcp = pos + 40
        ip_end = tcp + (plen if plen else len(frame) - tcp)
        while nxt in (0, 43, 60):                             # hop-by-hop, routing, dest opts
            if len(frame) < tcp + 2:
                return None
            nxt, tcp = frame[tcp], tcp + (frame[tcp + 1] + 1) * 8
        if nxt != 6:
            return None
    else:
        return None
    if len(frame) < tcp + 20:
        return None
    sport, dport, seq, ack, off, flags = struct.unpack_from("!HHIIBB", frame, tcp)
    data = tcp + (off >> 4) * 4
    length = max(0, ip_end - data)
    return src, sport, dst, dport, seq, ack, flags, length, frame[data:ip_end]
