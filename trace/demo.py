"""The kit's main job: record a demo session and show it.

    python -m trace.demo                 # writes session.log, then shows it
    python -m trace.demo --log my.log --no-show

It starts the reference server on a free loopback port with a temporary
root, runs a scripted client session against it (ls, put, get, a get of a
missing file, a get in active mode, quit), both programs appending to the
same trace log, and then shows the log.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# The commands the scripted client types: each line is what a student would
# type at the ftp> prompt.
SCRIPT = [
    "ls",
    "put notes.txt",
    "get photo.bin",
    "get missing.txt",        # the server answers 550, the session goes on
    "passive",                # switch to active mode: now the client listens
    "get photo.bin photo-active.bin",
    "quit",
]


@dataclass
class DemoSession:
    log: Path
    server_port: int
    client_output: str
    client_status: int


def make_files(server_root: Path, client_dir: Path) -> None:
    """Files to move: a text file on the client, a binary file on the server."""
    (client_dir / "notes.txt").write_text(
        "Two channels: commands and replies on one connection,\n"
        "every file on a connection of its own.\n" * 40)
    # Deterministic "random-looking" bytes, so every run moves the same file.
    block = bytes((i * 131 + 7) % 256 for i in range(4096))
    (server_root / "photo.bin").write_bytes(block * 64)   # 256 KiB


def record_session(log: str | os.PathLike, script: list[str] = SCRIPT,
                   workdir: str | os.PathLike | None = None) -> DemoSession:
    """Run server and client as two processes tracing into ``log``.

    The server and client are separate processes, as on two real machines:
    the log shows two pids appending to one file.
    """
    log = Path(log).resolve()
    with tempfile.TemporaryDirectory(prefix="ftpkit-demo-", dir=workdir) as tmp:
        server_root, client_dir = Path(tmp, "server"), Path(tmp, "client")
        server_root.mkdir()
        client_dir.mkdir()
        make_files(server_root, client_dir)
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        server = subprocess.Popen(
            [sys.executable, "-m", "solutions.server", "--root", str(server_root),
             "--trace", str(log), "0"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            ready = server.stdout.readline()
            if not ready.startswith("listening on "):
                raise RuntimeError(f"the server did not start: {ready}{server.stderr.read()}")
            port = int(ready.rsplit(":", 1)[1])
            client = subprocess.run(
                [sys.executable, "-m", "solutions.client", "--trace", str(log), "127.0.0.1", str(port)],
                cwd=client_dir, env=env, input="\n".join(script) + "\n",
                capture_output=True, text=True, timeout=60)
        finally:
            server.terminate()
            server.wait(timeout=10)
            server.stdout.close()
            server.stderr.close()
    return DemoSession(log, port, client.stdout + client.stderr, client.returncode)


def show(log: Path) -> None:
    """Show the log with the viewer, or plainly if the viewer is missing."""
    try:
        from . import view
    except ImportError:
        from .reader import load
        for event in load(log):
            print({k: v for k, v in event.items() if k not in ("pid", "seq")})
        return
    view.main([str(log)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trace.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", default="session.log", help="trace log to write (default session.log)")
    parser.add_argument("--no-show", action="store_true", help="record only; do not show the log")
    args = parser.parse_args(argv)
    log = Path(args.log)
    if log.exists():
        log.unlink()        # a fresh log, not appended to an old session
    session = record_session(log)
    print(session.client_output, end="")
    print(f"\ntrace written to {log} (server port {session.server_port})\n")
    if not args.no_show:
        show(log)
    # The script includes one deliberate error (the missing file), so the
    # client's own exit status is 1; the demo worked if the session ran to
    # the server's goodbye.
    return 0 if "221 Goodbye." in session.client_output else 1


if __name__ == "__main__":
    sys.exit(main())
