"""The file-transfer server: listen on a port, one thread per client.

Run it from the repository root, either way::

    python -m solutions.server 2121
    python solutions/server.py 2121          # as the original project ran it

Options: ``--host`` (default 127.0.0.1), ``--root DIR`` (default: the
current directory), ``--trace FILE``, ``--user``/``--password`` (default:
anonymous login), ``--max-clients N``, ``--idle-timeout SECONDS``.
Port 0 picks a free port; the server prints ``listening on HOST:PORT``
once it is ready for connections.
"""

from __future__ import annotations

import sys

if not __package__:
    # Started as a script (python solutions/server.py): Python put solutions/
    # first on sys.path. Put the repository root there instead, so that the
    # kit's own `trace` package wins over the standard library module.
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "solutions"

import argparse
import threading

import trace

from . import helper
from .filesystem import Root
from .protocol import Code
from .session import ServerConfig, ServerStats, Session


class Server:
    """Accepts control connections and gives each its own session thread."""

    def __init__(self, host: str, port: int, config: ServerConfig, max_clients: int = 200):
        self.config = config
        self.max_clients = max_clients
        self.stats = ServerStats()
        self.listener = helper.listen(host, port, "control")
        self.address = self.listener.getsockname()[:2]
        self._stopping = threading.Event()

    def serve_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                control = helper.accept(self.listener, timeout=None)
            except OSError:
                if self._stopping.is_set():
                    return              # shutdown() closed the listener
                raise
            ### BEGIN SOLUTION ex5: refuse with 421 when full; otherwise start a thread running the session
            with self.stats.lock:
                full = self.stats.sessions_open >= self.max_clients
                if not full:
                    self.stats.sessions_open += 1
                    self.stats.sessions_total += 1
            if full:
                self._refuse(control)
                continue
            # daemon: a client that never says QUIT must not keep the server
            # process alive after the main thread decides to exit.
            threading.Thread(target=self._serve_client, args=(control,), daemon=True).start()
            ### END SOLUTION

    def _serve_client(self, control) -> None:
        try:
            Session(control, self.config, self.stats).run()
        finally:
            self.stats.add(sessions_open=-1)

    def _refuse(self, control) -> None:
        try:
            helper.send_reply(control, Code.SERVICE_UNAVAILABLE, "Too many users, try again later.")
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
    parser.add_argument("--root", default=".", help="directory to serve (default: current directory)")
    parser.add_argument("--trace", metavar="FILE", help="append trace events (JSON Lines) to FILE")
    parser.add_argument("--user", help="require this user name (default: anonymous login)")
    parser.add_argument("--password", help="password for --user")
    parser.add_argument("--max-clients", type=int, default=200)
    parser.add_argument("--idle-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    if not 0 <= args.port <= 65535:
        parser.error(f"port must be 0-65535, not {args.port}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        root = Root(args.root)
    except OSError as err:
        print(f"server: {err}", file=sys.stderr)
        return 2
    if args.trace:
        trace.start(args.trace, "server")
    config = ServerConfig(root, args.user, args.password, idle_timeout=args.idle_timeout)
    try:
        server = Server(args.host, args.port, config, args.max_clients)
    except OSError as err:
        print(f"server: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 1
    host, port = server.address
    print(f"listening on {host}:{port}", flush=True)
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
