"""Record a session's trace together with a packet capture of it.

    python -m trace.record session.log                        # + capture.pcap beside it
    python -m trace.record --capture capture.pcap session.log
    python -m trace.record --no-capture session.log           # the trace alone

It runs the scripted demo session (``trace.demo``: the reference server and
client as two processes, both tracing into the log) while :mod:`trace.capture`
sniffs the loopback interface, then checks the capture against the trace
(:func:`trace.correlate.correlate`) and prints the coverage. Capturing needs
root or CAP_NET_RAW; without them it says so in one line and records the
trace alone.

:func:`run_session` runs any script with any files (the tests and the
benchmark use it); :func:`record` wraps a session in a capture.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .capture import Capture, CaptureError, why_not

REPO_ROOT = Path(__file__).resolve().parent.parent

# The implementation these tools run: the reference solution in the kit, and
# the student's own lab/ in a student release, which has no solutions/.
IMPLEMENTATION = "solutions" if (REPO_ROOT / "solutions" / "server.py").exists() else "lab"

# The kit's recorded sample, and the command that regenerates it.
SAMPLE_LOG = REPO_ROOT / "trace" / "samples" / "session.log"
SAMPLE_PCAP = REPO_ROOT / "trace" / "samples" / "capture.pcap"
SAMPLE_COMMAND = "python -m trace.record --capture trace/samples/capture.pcap trace/samples/session.log"


@dataclass
class Session:
    log: Path
    server_port: int
    client_output: str
    client_status: int


@dataclass
class Recording:
    session: Session
    capture: Capture | None        # None: no capture was made
    reason: str | None             # why not, in one line


@contextmanager
def capturing(path, control_port=None, *, log=None,
              say: Callable[[str], None] | None = print):
    """Capture while the body runs, if this process can; yields the
    :class:`~trace.capture.Capture` or ``None`` (after saying why, in one
    line, through ``say``). Give the session's trace ``log`` (or its
    ``control_port``) so that only that session is kept: the control port
    is read from the log's ``listen`` event as the server starts.
    """
    reason = why_not()
    cap = None
    if reason is None:
        try:
            cap = Capture(path, control_port, log=log).start()
        except CaptureError as err:
            reason = str(err)
    if reason and say:
        say(f"no capture: {reason}; recording the trace alone")
    try:
        yield cap
    finally:
        if cap is not None:
            cap.stop()


@contextmanager
def serving(log, server_root, server_args=()):
    """The reference server as a process tracing into ``log``; yields its port."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    server = subprocess.Popen(
        [sys.executable, "-m", f"{IMPLEMENTATION}.server", "--root", str(server_root),
         "--trace", str(Path(log).resolve()), *server_args, "0"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = server.stdout.readline()
        if not ready.startswith("listening on "):
            raise RuntimeError(f"the server did not start: {ready}{server.stderr.read()}")
        yield int(ready.rsplit(":", 1)[1])
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
        server.stderr.close()


def run_client(log, port: int, script: list[str], client_dir, active: bool = False,
               timeout: float = 120.0, wait: bool = True):
    """The reference client as a process tracing into ``log``, typing ``script``.

    With ``wait=False`` it returns the running :class:`subprocess.Popen`
    (several clients at once); otherwise the finished CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    args = [sys.executable, "-m", f"{IMPLEMENTATION}.client", "--trace", str(Path(log).resolve())]
    if active:
        args.append("--active")
    args += ["127.0.0.1", str(port)]
    stdin = "\n".join(script) + "\n"
    if wait:
        return subprocess.run(args, cwd=client_dir, env=env, input=stdin, capture_output=True,
                              text=True, timeout=timeout)
    # The script goes in through a file, so the caller's communicate() has no
    # stdin pipe to write to and any number of clients can run at once.
    with tempfile.TemporaryFile("w+") as script_file:
        script_file.write(stdin)
        script_file.seek(0)
        return subprocess.Popen(args, cwd=client_dir, env=env, stdin=script_file,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def put_files(directory, files: dict | None) -> None:
    """Write ``files`` (name -> bytes, or a size: that many deterministic bytes)."""
    for name, content in (files or {}).items():
        (Path(directory) / name).write_bytes(_content(content))


def run_session(log, script: list[str], server_files: dict | None = None,
                client_files: dict | None = None, active: bool = False,
                workdir=None, timeout: float = 120.0, server_args=()) -> Session:
    """Run the reference server and client as two processes, both tracing
    into ``log``, the client typing ``script``. ``server_files`` and
    ``client_files`` are put in the server's root and the client's
    directory first (see :func:`put_files`); ``server_args`` go to the
    server (for example the fault-injection options)."""
    log = Path(log).resolve()
    with tempfile.TemporaryDirectory(prefix="ftpkit-record-", dir=workdir) as tmp:
        server_root, client_dir = Path(tmp, "server"), Path(tmp, "client")
        server_root.mkdir()
        client_dir.mkdir()
        put_files(server_root, server_files)
        put_files(client_dir, client_files)
        with serving(log, server_root, server_args) as port:
            client = run_client(log, port, script, client_dir, active, timeout)
    return Session(log, port, client.stdout + client.stderr, client.returncode)


def _content(content) -> bytes:
    if isinstance(content, int):
        block = bytes((i * 131 + 7) % 256 for i in range(4096))
        return (block * (content // 4096 + 1))[:content]
    return content if isinstance(content, bytes) else str(content).encode()


def record(log, capture_path=None, run: Callable[[Path], Session] | None = None,
           say: Callable[[str], None] | None = print) -> Recording:
    """Record a session into a fresh ``log`` while capturing it into
    ``capture_path`` (``None``: no capture). ``run(log)`` runs the session;
    by default the scripted demo session."""
    log = Path(log)
    if log.exists():
        log.unlink()
    if run is None:
        from .demo import record_session
        run = record_session
    if capture_path is None:
        return Recording(run(log), None, "not asked for")
    with capturing(capture_path, log=log, say=say) as cap:
        session = run(log)
    return Recording(session, cap, None if cap else why_not())


def record_or_sample(directory, say: Callable[[str], None] | None = print) -> tuple[Path, Path]:
    """For notebooks and docs: record the demo session with its capture into
    ``directory`` (``session.log``, ``capture.pcap``) if this machine can
    capture, else say why in one line and return the kit's sample."""
    reason = why_not()
    if reason is None:
        log, pcap = Path(directory, "session.log"), Path(directory, "capture.pcap")
        rec = record(log, pcap, say=say)
        if rec.capture is not None:
            return log, pcap
    if say:
        say(f"no capture here ({reason}); using the recorded sample {SAMPLE_LOG.name} + "
            f"{SAMPLE_PCAP.name} from trace/samples/")
    return SAMPLE_LOG, SAMPLE_PCAP


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trace.record",
        description="Record the scripted demo session: its trace and a packet capture of it.")
    parser.add_argument("log", nargs="?", default="session.log",
                        help="trace log to write (default session.log)")
    parser.add_argument("--capture", metavar="PCAP",
                        help="capture file to write (default: capture.pcap beside the log)")
    parser.add_argument("--no-capture", action="store_true", help="record the trace alone")
    args = parser.parse_args(argv)
    log = Path(args.log)
    pcap = None if args.no_capture else Path(args.capture or log.with_name("capture.pcap"))
    rec = record(log, pcap)
    status = 0 if "221" in rec.session.client_output else 1
    print(f"trace written to {log} (server port {rec.session.server_port})")
    if rec.capture is not None:
        print(rec.capture.summary())
        from .correlate import correlate
        from .reader import load
        result = correlate(load(log), pcap)
        print(result.summary())
    return status


if __name__ == "__main__":
    sys.exit(main())
