"""Capture a session's TCP segments on the loopback interface, with scapy.

A :class:`Capture` sniffs the loopback interface while a session runs and
writes the session's segments to a standard pcap file (Wireshark, tshark and
tcpdump open it). It keeps only the session's traffic: connections on the
control port and on the data ports the control channel announces, which it
learns by reading the control connection's own segments as they pass (the
``227``/``229`` replies to PASV/EPSV, the PORT/EPRT commands). The control
port is given, or read from the ``listen`` event in the session's trace log
as the server starts, or, failing both, recognised by the server's ``220``
greeting.

    with Capture("capture.pcap", log="session.log") as cap:
        ...run the session, tracing into session.log...
    print(cap.summary())

The sniffer is started with scapy's ``started_callback`` and :meth:`start`
returns only once it is running, so no SYN is missed. On Linux scapy's
native socket would see every loopback packet twice (once going out, once
coming in); this module's socket keeps only the incoming copy. It also
enlarges the socket's kernel buffer, because loopback segments are up to
64 KiB each and a small buffer drops packets during a fast transfer; the
kernel's drop count is reported in :attr:`Capture.dropped`.

Capturing needs root or CAP_NET_RAW (a BPF device on macOS, Npcap on
Windows): :func:`can_capture` says whether this process can, and
:func:`why_not` says why not, in one line.
"""

from __future__ import annotations

import collections
import os
import socket
import struct
import sys
import threading
import time

from .announce import announcement_in_line, reply_code
from .pcap import SNAPLEN as _SNAPLEN, PcapWriter
from .tcp import parse_frame

__all__ = ["Capture", "CaptureError", "can_capture", "why_not", "loopback_interface",
           "PcapWriter", "NO_CAPTURE_REASON"]

NO_CAPTURE_REASON = "live capture needs root or CAP_NET_RAW"

_SOL_PACKET = 263
_PACKET_STATISTICS = 6
_SO_RCVBUFFORCE = 33
_BUFFER = 256 << 20         # the sniffer socket's kernel buffer (at most; memory is
                            # only used while the sniffer lags behind a transfer)


class CaptureError(Exception):
    """Capturing is not possible here; the message is one line for the user."""


def loopback_interface() -> str:
    """The loopback interface's name for scapy on this platform."""
    if sys.platform.startswith("linux"):
        return "lo"
    if sys.platform == "darwin" or "bsd" in sys.platform:
        return "lo0"
    if sys.platform == "win32":
        from scapy.all import conf
        for iface in conf.ifaces.values():
            desc = f"{getattr(iface, 'description', '')} {getattr(iface, 'name', '')}"
            if "loopback" in desc.lower():
                return iface.network_name
        raise CaptureError("no loopback adapter: install Npcap with "
                           "'Support loopback traffic' ticked")
    return "lo"


def why_not() -> str | None:
    """``None`` if this process can capture on loopback, else the reason."""
    if sys.platform.startswith("linux"):
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        except PermissionError:
            return NO_CAPTURE_REASON
        except OSError as err:
            return f"cannot open a packet socket: {err.strerror or err}"
        s.close()
        return None
    if sys.platform == "darwin" or "bsd" in sys.platform:
        bpf = [f"/dev/bpf{i}" for i in range(4)]
        if any(os.access(p, os.R_OK) for p in bpf) or os.geteuid() == 0:
            return None
        return "live capture needs root (or read access to /dev/bpf*)"
    if sys.platform == "win32":
        try:
            loopback_interface()
        except CaptureError as err:
            return str(err)
        except Exception as err:            # scapy without Npcap
            return f"live capture needs Npcap ({err})"
        return None
    return f"live capture is not supported on {sys.platform}"


def _greeting(payload: bytes) -> bool:
    """Whether a connection's first bytes are a server's 220 greeting."""
    first = payload.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")
    return reply_code(first) == 220


def can_capture() -> bool:
    return why_not() is None


def _attach_whole_frame_filter(sock, expr: str, iface: str) -> bool:
    """Attach a BPF filter that keeps whole frames; False if it cannot."""
    try:
        from scapy.arch.common import compile_filter
        from scapy.arch.linux import SO_ATTACH_FILTER
        from scapy.libs.structures import sock_fprog
        program = compile_filter(expr, iface)
    except Exception:
        return False
    for i in range(program.bf_len):
        insn = program.bf_insns[i]
        if insn.code == 0x06 and insn.k > 0:          # BPF_RET|BPF_K: accept, snap length k
            insn.k = _SNAPLEN
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                        sock_fprog(program.bf_len, program.bf_insns))
    except OSError:
        return False
    return True


def _linux_socket(iface: str, bpf: str | None):
    """A scapy L2 socket on ``iface`` that keeps each loopback packet once,
    hands over raw bytes and has a kernel buffer big enough for 64 KiB
    segments."""
    from scapy.all import conf
    from scapy.arch.linux import L2Socket

    class _Socket(L2Socket):
        # L2Socket (unlike the L2ListenSocket sniff() uses by default) drops
        # the PACKET_OUTGOING copy of each packet: on loopback, every packet
        # is seen leaving and arriving, and only the arrival is kept.
        def __init__(self):
            super().__init__(iface=iface)
            # "inbound" drops the outgoing copy in the kernel already (it
            # compiles to a test of the packet type), halving the work; an
            # older libpcap may not know it, so fall back step by step. The
            # filter's own code is attached (not scapy's attach_filter),
            # because scapy compiles it with a 65535-byte snap length, which
            # would cut the end off every full 64 KiB loopback segment.
            for expr in (f"inbound and ({bpf})" if bpf else "inbound", bpf):
                if expr and _attach_whole_frame_filter(self.ins, expr, iface):
                    break
            try:
                self.ins.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _BUFFER)
            except OSError:
                self.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
            self.LL = conf.raw_layer          # no dissection: we parse headers ourselves

        def recv_raw(self, x=_SNAPLEN):
            # scapy reads at most its MTU constant (65535 bytes), but a
            # loopback frame is up to 65536 + 14: read whole frames.
            return super().recv_raw(max(x, _SNAPLEN))

    return _Socket()


class Capture:
    """Capture one session's TCP traffic on loopback into a pcap file.

    ``control_port``: the server's control port (or ports), if known;
    :meth:`add_control_port` adds one later. ``log``: the session's trace
    log, if it is being written; the control ports are then read from its
    ``listen`` events as the session starts (this is the safe choice on a
    machine where other FTP sessions may run at the same time). Without
    either, the first connection that opens with a ``220`` greeting is taken
    as the control connection. Data ports are learnt from the control
    channel. With ``everything=True`` all TCP on the interface is kept.
    """

    def __init__(self, path, control_port=None, *, log=None, iface: str | None = None,
                 everything: bool = False):
        self.path = os.fspath(path)
        self.log = os.fspath(log) if log is not None else None
        self._log_pos = 0
        self._log_tail = b""
        self.iface = iface or loopback_interface()
        self.everything = everything
        if control_port is None:
            ports = ()
        elif isinstance(control_port, int):
            ports = (control_port,)
        else:
            ports = tuple(control_port)
        self.control_ports: set[int] = set(ports)
        self.data_ports: set[int] = set()
        self.seen = 0              # TCP packets the sniffer handed over
        self.kept = 0              # packets written
        self.dropped = 0           # packets the kernel dropped (buffer full)
        self._lines: dict = {}     # control flow -> unfinished line
        self._pending: dict = {}   # connection -> "wait" until its greeting shows
        self._queue: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._sniffer = None
        self._socket = None
        self._writer = None
        self._linktype = 1
        self._last_packet = 0.0

    # -- control ------------------------------------------------------------
    def add_control_port(self, port: int) -> None:
        with self._lock:
            self.control_ports.add(int(port))

    def start(self, timeout: float = 10.0) -> "Capture":
        reason = why_not()
        if reason:
            raise CaptureError(reason)
        from scapy.all import AsyncSniffer, conf

        conf.verb = 0
        started = threading.Event()
        if sys.platform.startswith("linux"):
            self._socket = _linux_socket(self.iface, "tcp")
            self._linktype = 1
            kwargs = {"opened_socket": self._socket}
        else:
            self._socket = conf.L2listen(iface=self.iface, filter="tcp")
            ll = getattr(self._socket, "LL", None)
            self._linktype = conf.l2types.layer2num.get(ll, 0) if ll else 0
            kwargs = {"opened_socket": self._socket}
        self._writer = PcapWriter(self.path, self._linktype)
        self._sniffer = AsyncSniffer(prn=self._packet, store=False,
                                     started_callback=started.set, **kwargs)
        self._sniffer.start()
        if not started.wait(timeout):
            self._sniffer.stop(join=False)
            raise CaptureError("the sniffer did not start")
        return self

    def stop(self, settle: float = 0.3) -> "Capture":
        """Stop once the interface has been quiet for ``settle`` seconds
        (at most 3 s), so the last FINs and ACKs are in."""
        if self._sniffer is None:
            return self
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            quiet = time.monotonic() - self._last_packet
            if quiet >= settle:
                break
            time.sleep(settle - quiet)
        try:
            self._sniffer.stop()
        except Exception:
            pass
        self._sniffer = None
        self.dropped = self._kernel_drops()
        if self._socket is not None:
            try:
                self._socket.close()
            except Exception:
                pass
        return self.finish()

    def finish(self) -> "Capture":
        """Write out what is still queued (connections never recognised as
        the session's are left out) and close the file."""
        with self._lock:
            for key in list(self._pending):
                if self._pending[key] == "wait":
                    self._pending[key] = "drop"
            if self._writer is None:
                self._writer = PcapWriter(self.path, self._linktype)
            self._flush()
            self._writer.close()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def summary(self) -> str:
        text = (f"captured {self.kept} segments of the session to {self.path} "
                f"(control port {', '.join(map(str, sorted(self.control_ports))) or '?'}, "
                f"{len(self.data_ports)} data ports)")
        if self.dropped:
            text += f"; the kernel dropped {self.dropped} packets"
        return text

    def _kernel_drops(self) -> int:
        sock = getattr(self._socket, "ins", None)
        if sock is None or not sys.platform.startswith("linux"):
            return 0
        try:
            _packets, drops = struct.unpack("II", sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8))
            return drops
        except OSError:
            return 0

    # -- the sniffer thread --------------------------------------------------
    def _packet(self, pkt) -> None:
        self._last_packet = time.monotonic()
        self.feed(bytes(pkt), float(pkt.time))

    def feed(self, frame: bytes, t: float) -> None:
        """Filter one captured frame into the file: what the sniffer does
        with every packet (it may also be called to filter frames read from
        elsewhere; :meth:`finish` then closes the file)."""
        if self._writer is None:
            self._writer = PcapWriter(self.path, self._linktype)
        parsed = parse_frame(frame, self._linktype)
        if parsed is None:
            return
        src, sport, dst, dport, seq, ack, flags, length, payload = parsed
        with self._lock:
            self.seen += 1
            ports = self.control_ports
            if self.everything:
                verdict = "keep"
            elif sport in ports or dport in ports:
                verdict = "keep"
                if payload:
                    self._learn((src, sport, dst, dport), payload)
            elif sport in self.data_ports or dport in self.data_ports:
                verdict = "keep"
            else:
                key = ((src, sport), (dst, dport)) if (src, sport) < (dst, dport) \
                    else ((dst, dport), (src, sport))
                state = self._pending.get(key)
                if state is None and flags & 0x02 and not flags & 0x10:
                    if self.log is not None:
                        # A new connection: is it to a control port the
                        # session's log has announced by now?
                        self._read_log()
                        if dport in self.control_ports:
                            self._queue.append(("keep", frame, t))
                            self._flush()
                            return
                        state = self._pending[key] = "drop"
                    else:
                        state = self._pending[key] = "wait"     # watch it for a greeting
                if state == "wait":
                    verdict = key
                    if payload:
                        # Its first bytes decide: a server's 220 greeting makes
                        # it a control connection, anything else is not ours.
                        if _greeting(payload) and not self.control_ports:
                            self.control_ports.add(sport)
                            self._pending[key] = "keep"
                            self._learn((src, sport, dst, dport), payload)
                        else:
                            self._pending[key] = "drop"
                else:
                    verdict = "drop"
            if verdict == "drop" and not self._queue:
                return
            self._queue.append((verdict, frame, t))
            self._flush()

    def _flush(self) -> None:
        """Write out the queue's head for as long as it is decided, so the
        file stays in capture order while a new connection is watched."""
        q = self._queue
        while q:
            verdict, frame, t = q[0]
            if not isinstance(verdict, str):
                state = self._pending.get(verdict)
                if state == "wait":
                    if len(q) < 100000 and t > (q[-1][2] - 5.0):
                        return
                    state = self._pending[verdict] = "drop"
                verdict = state
            q.popleft()
            if verdict == "keep":
                self._writer.write(frame, t)
                self.kept += 1

    def _read_log(self) -> None:
        """Take the control ports from the new ``listen`` events in the log."""
        import json
        try:
            with open(self.log, "rb") as f:
                f.seek(self._log_pos)
                data = f.read()
        except OSError:
            return
        self._log_pos += len(data)
        lines = (self._log_tail + data).split(b"\n")
        self._log_tail = lines[-1]
        for line in lines[:-1]:
            if b'"listen"' not in line or b'"control"' not in line:
                continue
            try:
                ev = json.loads(line)
                if ev.get("type") == "listen" and ev.get("channel") == "control":
                    self.control_ports.add(int(ev["local"].rsplit(":", 1)[1]))
            except (ValueError, KeyError, AttributeError):
                continue

    def _learn(self, flow, payload: bytes) -> None:
        """Read control-channel lines for announced data ports."""
        text = self._lines.get(flow, b"") + payload
        lines = text.split(b"\n")
        self._lines[flow] = lines[-1][-4096:]
        for raw in lines[:-1]:
            found = announcement_in_line(raw.decode("latin-1"))
            if found:
                self.data_ports.add(found[1])
