# ftpkit lab: starter code generated from the reference solution by
# `python -m solutions.generate`. Replace each `raise NotImplementedError(...)`
# with your code; lab/README.md says what each exercise asks for.
"""The file-transfer server: listen on a port, one thread per client.

Run it from the repository root, either way::

    python -m lab.server 2121
    python lab/server.py 2121          # as the original project ran it

Options: ``--host`` (default 127.0.0.1), ``--root DIR`` (default: a folder
made for the server, ``~/ftpkit-files``; never the current directory),
``--read-only``, ``--trace FILE``, ``--user``/``--password`` (default:
anonymous login), ``--max-clients N``, ``--max-per-ip N``, ``--idle-timeout SECONDS``,
``--accept-timeout SECONDS``, ``--transfer-timeout SECONDS``, and the fault
injection options ``--fault-flip-every N``, ``--fault-delay SECONDS`` and
``--fault-drop-after N`` (see faults.py).
Port 0 picks a free port; the server prints ``listening on HOST:PORT``
once it is ready for connections, and on the next line the folder it serves.
"""

from __future__ import annotations

import sys

if not __package__:
    # Started as a script (python lab/server.py): Python put lab/
    # first on sys.path. Put the repository root there instead, so that the
    # kit's own `trace` package wins over the standard library module.
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "lab"

import argparse
import errno
import logging
import os
import socket
import threading
import time

import trace

from . import helper
from .faults import Faults
from .filesystem import Root
from .protocol import Code
from .session import ServerConfig, ServerStats, Session

log = logging.getLogger("ftpkit.server")

# Connections the kernel completes and queues while the accept loop is busy.
# A whole class logging in at once must wait here, not have its SYNs dropped
# and retried a second later; the kernel caps this at net.core.somaxconn.
CONTROL_BACKLOG = socket.SOMAXCONN

# accept() errors that mean "not now" rather than "never": out of file
# descriptors or memory (wait for sessions to end), or a client that gave up
# while it waited in the backlog.
TRANSIENT_ACCEPT_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM,
                           errno.ECONNABORTED, errno.EPROTO, errno.EPERM}

# Without --root the server serves this folder, made for it, and never the
# folder it was started from: started from a home folder, that would offer
# .ssh and everything else in it to anonymous users.
DEFAULT_ROOT = "~/ftpkit-files"
# Connections one address may hold at once. Anyone can open many idle
# connections; without a limit per address one host could take every slot.
MAX_PER_ADDRESS = 4


class Server:
    """Accepts control connections and gives each its own session thread."""

    def __init__(self, host: str, port: int, config: ServerConfig, max_clients: int = 200,
                 max_per_address: int | None = None):
        self.config = config
        self.max_clients = max_clients
        self.max_per_address = max_per_address      # None: no limit per address
        self.per_address: dict[str, int] = {}       # open sessions by client address, under stats.lock
        self.stats = ServerStats()
        for stale in config.root.remove_stale_uploads():
            log.warning("removed %s, left by an upload that never finished", stale)
        self.listener = helper.listen(host, port, "control", backlog=CONTROL_BACKLOG)
        self.address = self.listener.getsockname()[:2]
        self._stopping = threading.Event()

    def serve_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                control = helper.accept(self.listener, timeout=None)
            except OSError as err:
                if self._stopping.is_set():
                    return              # shutdown() closed the listener
                if err.errno not in TRANSIENT_ACCEPT_ERRORS:
                    raise
                # Keep serving the clients we have; accept again shortly.
                log.warning("cannot accept a connection now: %s", err.strerror or err)
                time.sleep(0.1)
                continue
            # ex5: refuse with 421 when full; otherwise start a thread running the session.
            # Until then the starter serves one client at a time, in this thread, and
            # a session that fails does not take the server down.
            try:
                Session(control, self.config, self.stats).run()
            except Exception:
                import traceback
                traceback.print_exc()

    def _serve_client(self, control) -> None:
        address = None
        try:
            address = control.getpeername()[0]
            if not self._admit(address):
                address = None
                self._refuse(control, "Too many connections from your address.")
                return
            Session(control, self.config, self.stats).run()
        except OSError:
            # The client left before its session could begin (Session() asks
            # for its address); run() closes the connection in every other case.
            control.close()
        finally:
            self.stats.add(sessions_open=-1)
            if address is not None:
                with self.stats.lock:
                    self.per_address[address] -= 1
                    if not self.per_address[address]:
                        del self.per_address[address]

    def _admit(self, address: str) -> bool:
        """Count a session for ``address``, unless it already holds its share."""
        with self.stats.lock:
            count = self.per_address.get(address, 0)
            if self.max_per_address is not None and count >= self.max_per_address:
                return False
            self.per_address[address] = count + 1
            return True

    def _refuse(self, control, why: str = "Too many users, try again later.") -> None:
        try:
            helper.send_reply(control, Code.SERVICE_UNAVAILABLE, why)
        except OSError:
            pass
        control.close()

    def start(self) -> "Server":
        """Serve in a background thread (for tests and the demo)."""
        threading.Thread(target=self.serve_forever, daemon=True, name="ftp-accept").start()
        return self

    def shutdown(self) -> None:
        self._stopping.set()
        self.listener.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="server", description="Two-channel file-transfer (FTP) server.")
    parser.add_argument("port", type=int, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--root", help=f"directory to serve (default: {DEFAULT_ROOT}, made if missing)")
    parser.add_argument("--read-only", action="store_true",
                        help="refuse every command that changes files (STOR, APPE, DELE, MKD, RMD, RNFR, RNTO)")
    parser.add_argument("--port-promiscuous", action="store_true",
                        help="let PORT/EPRT name any address, not only the client's (vsftpd's "
                             "port_promiscuous; unsafe: RFC 2577's bounce attack; for the NAT experiment)")
    parser.add_argument("--trace", metavar="FILE", help="append trace events (JSON Lines) to FILE")
    parser.add_argument("--user", help="require this user name (default: anonymous login)")
    parser.add_argument("--password", help="password for --user")
    parser.add_argument("--max-clients", type=int, default=200)
    parser.add_argument("--max-per-ip", type=int, default=MAX_PER_ADDRESS, metavar="N",
                        help=f"connections one address may hold at once (default {MAX_PER_ADDRESS}; 421 beyond)")
    parser.add_argument("--idle-timeout", type=float, default=300.0,
                        help="close a control connection idle this long (default 300 s)")
    parser.add_argument("--accept-timeout", type=float, default=30.0,
                        help="give up on a data connection not made within this time (default 30 s)")
    parser.add_argument("--transfer-timeout", type=float, default=60.0,
                        help="abort a data connection stalled this long (default 60 s)")
    faults = parser.add_argument_group("fault injection on the data channel (for experiments)")
    faults.add_argument("--fault-flip-every", type=int, metavar="N",
                        help="invert every N-th byte of each data connection")
    faults.add_argument("--fault-delay", type=float, default=0.0, metavar="SECONDS",
                        help="sleep this long before each 64 KiB chunk")
    faults.add_argument("--fault-drop-after", type=int, metavar="N",
                        help="reset each data connection after N bytes")
    args = parser.parse_args(argv)
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    if not 0 <= args.port <= 65535:
        parser.error(f"port must be 0-65535, not {args.port}")
    try:
        args.faults = Faults(args.fault_flip_every, args.fault_delay, args.fault_drop_after)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.root is None:
            args.root = os.path.expanduser(DEFAULT_ROOT)
            os.makedirs(args.root, exist_ok=True)
        root = Root(args.root)
    except OSError as err:
        print(f"server: {err}", file=sys.stderr)
        return 2
    if args.trace:
        trace.start(args.trace, "server")
    logging.basicConfig(format="server: %(message)s")
    config = ServerConfig(root, args.user, args.password, idle_timeout=args.idle_timeout,
                          accept_timeout=args.accept_timeout, transfer_timeout=args.transfer_timeout,
                          read_only=args.read_only, port_promiscuous=args.port_promiscuous,
                          faults=args.faults)
    if args.faults.active:
        print(f"server: injecting faults on the data channel: {args.faults}", file=sys.stderr)
    try:
        server = Server(args.host, args.port, config, args.max_clients, args.max_per_ip)
    except OSError as err:
        print(f"server: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 1
    host, port = server.address
    print(f"listening on {host}:{port}", flush=True)
    mode = "read-only" if args.read_only else "read-write"
    print(f"serving {root.directory} ({mode})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("server: stopped", file=sys.stderr)
    finally:
        server.shutdown()
        trace.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
