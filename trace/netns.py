"""A small network of three namespaces, for sessions over a real link that
loses packets, is slow, or translates addresses.

    client ns                  router ns                       server ns
    10.99.1.2  ---veth---  10.99.1.1 | 192.0.2.1  ---veth---  192.0.2.2:21
    (a private "home"          forwards; the scenario's        (the "internet"
     network)                  impairment lives here)           side, TEST-NET-1)

Scenarios (the topology is always the same):

* ``clean``: nothing is lost, slowed or rewritten; the baseline.
* ``lossy``: nftables drops a random fraction of TCP packets
  (``numgen random``), towards the client, the server, or both.
* ``slow``: tc's token bucket filter (``tbf``) limits the router's two
  outgoing links to a rate.
* ``nat``: the router masquerades the client's private address as its own,
  and, like any home router, lets nothing from outside in unless it answers
  a connection from inside. Passive mode works; in active mode the server
  must connect to the address in the PORT command, a private address it
  cannot reach, and the transfer gets 425.

This kernel has no ``netem``, so no scenario adds delay: the round-trip time
stays in the tens of microseconds, and a lost segment is repaired almost at
once (by fast retransmit, or after the minimum 200 ms timeout when too
little follows it to trigger one).

The capture is taken on the server's interface, as a tap on the cable
between router and server: it sees every packet the server sends, and every
packet sent to it, the lost ones included (they are dropped as they arrive
at the far end of that cable). No packet leaves the namespaces: none of them
has an interface in the host's namespace.

Every namespace, interface and nftables table is named after this process
and a random suffix, and :class:`Network` removes them on every exit path:
normal end, exceptions (also half-way through setting up), Ctrl-C, and
SIGTERM or SIGHUP (turned into an exception while the network exists). A
run killed outright (SIGKILL) cannot clean up; the next one removes its
namespaces (:func:`remove_leftovers`).
"""

from __future__ import annotations

import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CLIENT_ADDRESS = "10.99.1.2"
ROUTER_INSIDE = "10.99.1.1"
ROUTER_OUTSIDE = "192.0.2.1"
SERVER_ADDRESS = "192.0.2.2"
SERVER_PORT = 21                # the real FTP port: Wireshark dissects it as FTP
PREFIX = 24

SCENARIOS = ("clean", "lossy", "slow", "nat")
DIRECTIONS = ("both", "to-server", "to-client")
DEFAULT_LOSS = 5.0              # percent, for "lossy"
DEFAULT_RATE = "20mbit"         # for "slow"

TOOLS = ("ip", "nft", "tc", "tcpdump")


class NetworkError(RuntimeError):
    """Setting up the network failed; the message is one line for the user."""


# --- scenarios -----------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    name: str
    loss: float = 0.0               # percent of TCP packets dropped
    loss_direction: str = "both"    # both | to-server | to-client
    rate: str | None = None         # tc rate, e.g. "20mbit"
    nat: bool = False

    def describe(self) -> str:
        if self.loss:
            return f"{self.name}: {self.loss:g}% of TCP packets lost ({self.loss_direction})"
        if self.rate:
            return f"{self.name}: the link limited to {self.rate}"
        if self.nat:
            return f"{self.name}: the client {CLIENT_ADDRESS} behind a router masquerading as {ROUTER_OUTSIDE}"
        return f"{self.name}: no impairment"


def scenario(name: str, loss: float | None = None, loss_direction: str = "both",
             rate: str | None = None) -> Scenario:
    """The scenario ``name`` with its defaults, or the given loss or rate."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}: choose one of {', '.join(SCENARIOS)}")
    if loss_direction not in DIRECTIONS:
        raise ValueError(f"unknown loss direction {loss_direction!r}: {', '.join(DIRECTIONS)}")
    if name == "lossy":
        loss = DEFAULT_LOSS if loss is None else loss
        if not 0 < loss <= 100:
            raise ValueError(f"a loss of {loss:g}% is not between 0 and 100%")
        return Scenario(name, loss=loss, loss_direction=loss_direction)
    if name == "slow":
        rate = rate or DEFAULT_RATE
        rate_bits(rate)              # refuse a rate tc would not take, before building anything
        return Scenario(name, rate=rate)
    if loss or rate:
        raise ValueError(f"--loss goes with lossy and --rate with slow, not with {name}")
    return Scenario(name, nat=(name == "nat"))


def parse_loss(text: str) -> float:
    """``"5%"`` or ``"5"`` -> 5.0 (percent)."""
    try:
        return float(text.strip().rstrip("%"))
    except ValueError:
        raise ValueError(f"{text!r} is not a percentage (e.g. 5%)") from None


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)\s*$", re.IGNORECASE)
_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def rate_bits(rate: str) -> float:
    """Bits per second of a tc rate such as ``"20mbit"``."""
    match = _RATE.match(rate)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{rate!r} is not a rate: write e.g. 500kbit, 20mbit, 1gbit")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


# --- can this machine do it? ---------------------------------------------------

def why_not() -> str | None:
    """None if this process can build the network, else why not, in one line."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"network namespaces need {', '.join(missing)} (Debian: iproute2, nftables, tcpdump)"
    return None


# --- the network ---------------------------------------------------------------

class Network:
    """Three namespaces joined by two veth pairs, impaired as the scenario says.

    Use it as a context manager; everything is removed when the block ends,
    however it ends::

        with Network(scenario("lossy", loss=5)) as net, net.capturing("wire.pcap"):
            run_session(log, ["get a.bin", "quit"], {"a.bin": 1 << 20}, network=net)
    """

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        # pid + random suffix: two runs at once, or a run and a leftover of a
        # killed one, never share a name. 7 + 4 characters keep the longest
        # interface name ("fk" + tag + "rc") within the kernel's 15.
        self.tag = f"{os.getpid()}{secrets.token_hex(2)}"
        self.client_ns = f"ftpkit-{self.tag}-client"
        self.router_ns = f"ftpkit-{self.tag}-router"
        self.server_ns = f"ftpkit-{self.tag}-server"
        self.client_if, self.router_inside_if = f"fk{self.tag}c", f"fk{self.tag}rc"
        self.router_outside_if, self.server_if = f"fk{self.tag}rs", f"fk{self.tag}s"
        self.table = f"ftpkit_{self.tag}"
        self._made: list[str] = []          # namespaces that exist, to remove
        self._saved_handlers: dict = {}

    # where the programs run ------------------------------------------------------

    def server_placement(self) -> dict:
        """Keyword arguments for :func:`trace.launch.serving`."""
        placement = dict(host=SERVER_ADDRESS, port=SERVER_PORT, netns=self.server_ns)
        if self.scenario.nat:
            # The reference server refuses a PORT to any address but the
            # client's (RFC 2577); behind NAT that refusal (501) would hide
            # what this scenario shows, the connect that cannot arrive. So the
            # server runs as vsftpd's port_promiscuous would.
            placement["extra_args"] = ["--port-promiscuous"]
        return placement

    def client_placement(self) -> dict:
        """Keyword arguments for :func:`trace.launch.run_client`."""
        return dict(host=SERVER_ADDRESS, netns=self.client_ns)

    # building and removing ---------------------------------------------------------

    def __enter__(self) -> "Network":
        self._catch_signals()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build(self) -> None:
        reason = why_not()
        if reason:
            raise NetworkError(reason)
        remove_leftovers()
        for ns in (self.client_ns, self.router_ns, self.server_ns):
            self._made.append(ns)           # first: an interrupt may land right after the add
            _run("ip", "netns", "add", ns)
            self.ip(ns, "link", "set", "lo", "up")
        # Each veth pair is created with its ends already in their namespaces:
        # no end ever exists in the host's namespace.
        for (ns_a, if_a), (ns_b, if_b) in (((self.client_ns, self.client_if), (self.router_ns, self.router_inside_if)),
                                           ((self.router_ns, self.router_outside_if), (self.server_ns, self.server_if))):
            _run("ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        for ns, interface, address in ((self.client_ns, self.client_if, CLIENT_ADDRESS),
                                       (self.router_ns, self.router_inside_if, ROUTER_INSIDE),
                                       (self.router_ns, self.router_outside_if, ROUTER_OUTSIDE),
                                       (self.server_ns, self.server_if, SERVER_ADDRESS)):
            self.ip(ns, "addr", "add", f"{address}/{PREFIX}", "dev", interface)
            # One TCP segment per packet, as on a real cable: without this the
            # kernel hands veth 64 KiB "super segments" (TSO), and one lost
            # packet would be forty lost segments.
            self.ip(ns, "link", "set", "dev", interface, "gso_max_segs", "1")
            self.ip(ns, "link", "set", "dev", interface, "up")
        self.ip(self.client_ns, "route", "add", "default", "via", ROUTER_INSIDE)
        self.ip(self.server_ns, "route", "add", "default", "via", ROUTER_OUTSIDE)
        _run("ip", "netns", "exec", self.router_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        if self.scenario.loss:
            self._add_loss()
        if self.scenario.rate:
            self._add_rate()
        if self.scenario.nat:
            self._add_nat()

    def _add_loss(self) -> None:
        # Dropped at the ingress of the receiving end of the router-server
        # cable, which comes after the capture tap (the capture sees the
        # packet, the receiver never does). Only TCP: losing ARP would stall
        # the link for seconds and teach nothing.
        threshold = round(self.scenario.loss * 100)          # out of 10000
        direction = self.scenario.loss_direction
        if direction in ("both", "to-client"):
            self._drop_on_ingress(self.router_ns, self.router_outside_if, threshold)
        if direction in ("both", "to-server"):
            self._drop_on_ingress(self.server_ns, self.server_if, threshold)

    def _drop_on_ingress(self, ns: str, interface: str, threshold: int) -> None:
        self.nft(ns, f"""
            table netdev {self.table} {{
                chain lose {{
                    type filter hook ingress device "{interface}" priority 0; policy accept;
                    meta l4proto tcp numgen random mod 10000 < {threshold} counter drop
                }}
            }}""")

    def _add_rate(self) -> None:
        rate = self.scenario.rate
        bucket = max(int(rate_bits(rate) / 8 / 100), 16 * 1024)    # 10 ms at the rate, at least 16 KiB
        for interface in (self.router_inside_if, self.router_outside_if):
            _run("ip", "netns", "exec", self.router_ns, "tc", "qdisc", "add", "dev", interface,
                 "root", "tbf", "rate", rate, "burst", str(bucket), "latency", "50ms")

    def _add_nat(self) -> None:
        # masquerade: packets leaving by the outside cable take the router's
        # address. The forward chain is a home router's firewall: replies to
        # connections from inside come in, nothing else does. A real network
        # would drop the server's SYN to a private address silently and the
        # server would wait out its connect timeout; rejecting it with an
        # ICMP "host unreachable" gives the same 425 at once.
        self.nft(self.router_ns, f"""
            table ip {self.table} {{
                chain postrouting {{
                    type nat hook postrouting priority srcnat; policy accept;
                    oifname "{self.router_outside_if}" masquerade
                }}
                chain forward {{
                    type filter hook forward priority filter; policy accept;
                    ct state established,related accept
                    iifname "{self.router_outside_if}" oifname "{self.router_inside_if}" counter reject with icmp type host-unreachable
                }}
            }}""")

    def close(self) -> None:
        """Remove everything this network made (safe to call more than once)."""
        # No second Ctrl-C in the middle of cleaning up: signals wait until
        # everything is gone, then arrive as usual.
        blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            for ns in reversed(self._made):
                self._stop_processes_in(ns)
                self._nft_quiet(ns, "delete", "table", "netdev", self.table)
                self._nft_quiet(ns, "delete", "table", "ip", self.table)
                subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
            self._made.clear()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            self._restore_signals()

    def _stop_processes_in(self, ns: str) -> None:
        """Kill what still runs in one of our namespaces (only ours: the name is ours)."""
        for _ in range(50):
            listed = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            pids = [int(p) for p in listed.stdout.split()]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    def _nft_quiet(self, ns: str, *args: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns, "nft", *args], capture_output=True)

    def _catch_signals(self) -> None:
        """SIGTERM and SIGHUP end the block like Ctrl-C does, so ``close`` runs."""
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum, _frame):
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._saved_handlers[sig] = signal.signal(sig, stop)

    def _restore_signals(self) -> None:
        for sig, handler in self._saved_handlers.items():
            signal.signal(sig, handler)
        self._saved_handlers.clear()

    # helpers -------------------------------------------------------------------------

    def ip(self, ns: str, *args: str) -> None:
        _run("ip", "-n", ns, *args)

    def nft(self, ns: str, ruleset: str) -> None:
        _run("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=ruleset)

    def dropped(self) -> dict[str, int]:
        """Packets the loss rules dropped so far, by direction."""
        counts = {}
        for direction, ns in (("to-client", self.router_ns), ("to-server", self.server_ns)):
            listed = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "netdev", self.table],
                                    capture_output=True, text=True)
            counts[direction] = sum(int(n) for n in re.findall(r"counter packets (\d+)", listed.stdout))
        return counts

    @contextmanager
    def capturing(self, path):
        """tcpdump on the server's interface while the block runs; yields a
        :class:`WireCapture`."""
        capture = WireCapture(path, self.server_ns, self.server_if)
        capture.start()
        try:
            yield capture
        finally:
            capture.stop()


_OUR_NAMESPACE = re.compile(r"^ftpkit-(\d+)[0-9a-f]{4}-(client|router|server)$")


def remove_leftovers() -> list[str]:
    """Remove the namespaces of runs that were killed outright (SIGKILL, a
    power cut) and so could not clean up: ours by name, and their pid is no
    longer alive. Returns their names."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    removed = []
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _OUR_NAMESPACE.match(name)
        if not match or _alive(int(match.group(1))):
            continue
        for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run(*args: str, stdin: str | None = None) -> None:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        problem = (done.stderr or done.stdout).strip().splitlines()
        raise NetworkError(f"{' '.join(args[:6])}: {problem[0] if problem else f'exit status {done.returncode}'}")


# --- the capture on the cable -------------------------------------------------------

class WireCapture:
    """tcpdump inside the server's namespace, writing a pcap of TCP and ICMP."""

    def __init__(self, path, ns: str, interface: str):
        self.path = Path(path)
        self.ns, self.interface = ns, interface
        self.kept = 0
        self.kernel_drops = 0        # packets tcpdump could not keep up with (its own count)
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "WireCapture":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # -U with --immediate-mode: every packet reaches the file at once, so
        # the file is complete the moment tcpdump stops. -Z root: write the
        # file as the user who asked (tcpdump would switch to its own user).
        self._process = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "tcpdump", "-i", self.interface, "-n", "-s", "0",
             "-B", "131072", "--immediate-mode", "-U", "-Z", "root", "-w", str(self.path), "tcp or icmp"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._process.stderr], [], [], 0.2)
            line = self._process.stderr.readline() if ready else ""
            if "listening on" in line:
                return self
            if self._process.poll() is not None:
                break
        error = self._process.stderr.read() if self._process.poll() is not None else "no answer"
        self.stop()
        raise NetworkError(f"tcpdump did not start: {error.strip()}")

    def stop(self) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        time.sleep(0.2)                          # the last FIN's ACK reaches the file
        process.send_signal(signal.SIGINT)       # tcpdump closes the file properly
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        found = re.search(r"(\d+) packets? dropped by kernel", process.stderr.read() or "")
        self.kernel_drops = int(found.group(1)) if found else 0
        process.stderr.close()
        if self.path.exists():
            from .correlate import read_segments
            self.kept = sum(1 for _ in read_segments(self.path))

    def summary(self) -> str:
        dropped = f"; tcpdump missed {self.kernel_drops} packets" if self.kernel_drops else ""
        return f"capture written to {self.path}: {self.kept} TCP segments on the router-server cable{dropped}"
