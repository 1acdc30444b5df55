"""Recorded sessions of the reference implementation, and the choice between
them and a live session of the student's own ``lab/``.

    python -m trace.reference                 # list the recorded sessions
    python -m trace.reference --record        # re-record them all (in the kit, as root)

A student release has no reference code, but students still need to see what
the reference does. So the kit ships one recording (trace and packet
capture) of every scenario the handout and the notebooks use, made with the
reference as root, in ``trace/samples/reference/``:

    demo         the demo's session: ls, put, get, a missing file, an active get
    passive      ls, get, put in passive mode (the default)
    active       the same in active mode (PORT/EPRT: the server connects)
    errors       a download damaged on purpose (the server's --fault-flip-every):
                 TCP is happy, the SHA-256 is not (the demo has the missing file, 550)
    dropped      a download whose data connection the server resets (426)
    concurrency  four clients at once, each a put, a get and an ls
    failures     the client library driven step by step: a missing file (550),
                 RETR with no PASV or PORT first (425), a dropped download (426)

The demo and the notebooks run a session live, with the student's ``lab/``
in a release; :func:`live_or_recorded` keeps the live session when its
conversation (each command and its reply's class) is the reference's, and
shows the recording otherwise, saying in one line which it shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = REPO_ROOT / "trace" / "samples" / "reference"
RECORD_COMMAND = "python -m trace.reference --record"

NOTES = ("Two channels: commands and replies on one connection,\n"
         "every file on a connection of its own.\n" * 40).encode()
PHOTO_SIZE = 256 * 1024


@dataclass(frozen=True)
class Scenario:
    name: str
    script: tuple[str, ...]
    exercises: str                       # what a lab needs for it, in words
    server_args: tuple[str, ...] = ()
    clients: int = 1
    server_files: dict = field(default_factory=lambda: {"photo.bin": PHOTO_SIZE})
    client_files: dict = field(default_factory=lambda: {"notes.txt": NOTES})
    library: bool = False                # driven through the client library, not the shell (drive_failures)


def _demo_script() -> tuple[str, ...]:
    from .demo_script import SCRIPT
    return tuple(SCRIPT)


SCENARIOS = {s.name: s for s in [
    Scenario("demo", _demo_script(), "exercises 1-4 and 6"),
    Scenario("passive", ("ls", "get photo.bin", "put notes.txt", "quit"), "exercises 1-3"),
    Scenario("active", ("passive", "ls", "get photo.bin", "put notes.txt", "quit"), "exercises 1-3 and 6"),
    Scenario("errors", ("get photo.bin", "quit"), "exercises 1-4",
             server_args=("--fault-flip-every", "100000")),
    Scenario("dropped", ("get photo.bin", "quit"), "exercises 1-4",
             server_args=("--fault-drop-after", "100000")),
    Scenario("concurrency", ("put notes.txt", "get photo.bin", "ls", "quit"), "exercises 1-5",
             clients=4),
    # Driven through the client library: its "script" is the calls it makes, in words.
    Scenario("failures", ("command RETR missing.bin", "command RETR photo.bin", "get photo.bin", "quit"),
             "exercises 1-3", server_args=("--fault-drop-after", "100000"), library=True),
]}


def recorded(name: str) -> tuple[Path, Path | None]:
    """The recorded reference session ``name``: (trace, capture or None)."""
    log, pcap = REFERENCE_DIR / f"{name}.log", REFERENCE_DIR / f"{name}.pcap"
    if not log.exists():
        raise FileNotFoundError(f"{log}: no recorded reference session {name!r} "
                                f"(known: {', '.join(SCENARIOS)}; re-record with `{RECORD_COMMAND}`)")
    return log, (pcap if pcap.exists() else None)


def scenario_for(script, server_args=()) -> Scenario | None:
    """The scenario that runs this script with these server options, if any."""
    for scenario in SCENARIOS.values():
        if tuple(script) == scenario.script and tuple(server_args) == scenario.server_args:
            return scenario
    return None


# --- comparing a session with the reference ------------------------------------------

_MODE = {"PASV": "passive", "EPSV": "passive", "PORT": "active", "EPRT": "active"}


def conversation(log) -> list[str]:
    """What each client said and heard: 'VERB -> Nxx', one per reply, in order
    (PASV and EPSV are one step, as are PORT and EPRT: either is right)."""
    from .reader import load
    pairs, pending = [], {}
    try:
        events = list(load(log))
    except Exception:                 # an unreadable or empty log: no conversation
        return []
    for event in events:
        if event.get("role") != "client":
            continue
        pid = event.get("pid")
        if event["type"] == "command":
            verb = event.get("text", "").split(" ")[0].upper()
            pending[pid] = _MODE.get(verb, verb)
        elif event["type"] == "reply" and isinstance(event.get("code"), int):
            pairs.append(f"{pending.get(pid, '(greeting)')} -> {event['code'] // 100}xx")
    return sorted(pairs) if len({e.get("pid") for e in events if e.get("role") == "client"}) > 1 else pairs


def differs(name: str, log) -> str | None:
    """None if the session in ``log`` has the reference's conversation, else
    the first difference, in words."""
    reference, yours = conversation(recorded(name)[0]), conversation(log)
    for number, (want, got) in enumerate(zip(reference, yours), 1):
        if want != got:
            return f"reply {number}: expected {want}, got {got}"
    if len(yours) < len(reference):
        return (f"the session stopped after {len(yours)} of {len(reference)} replies"
                + (f" (next expected: {reference[len(yours)]})" if yours else ""))
    if len(yours) > len(reference):
        return f"{len(yours) - len(reference)} more replies than the reference"
    return None


def live_or_recorded(name: str, run: Callable[[], object], log, pcap=None, *, package: str = "lab",
                     say: Callable[[str], None] | None = print) -> tuple[Path, Path | None]:
    """Run a live session (``run()`` writes ``log`` and maybe ``pcap``) and keep
    it if its conversation is the reference's scenario ``name``; otherwise
    return the recorded reference. Says in one line which it returns."""
    scenario = SCENARIOS[name]
    try:
        run()
        problem = differs(name, log)
    except Exception as err:          # the student's code may fail in any way: that is the point
        problem = f"it did not run ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    if problem is None:
        if say:
            say(f"Showing your {package}/'s own session ({name}): it runs as the reference does.")
        return Path(log), (Path(pcap) if pcap and Path(pcap).exists() else None)
    ref_log, ref_pcap = recorded(name)
    if say:
        say(f"Showing the recorded reference session {ref_log.relative_to(REPO_ROOT)}: your {package}/ "
            f"does not run this session yet ({problem}; it needs {scenario.exercises}).")
    return ref_log, ref_pcap


# --- recording ----------------------------------------------------------------------------

def run_scenario(scenario: Scenario, log, workdir=None) -> None:
    """Run one scenario with this kit's implementation (the reference, or
    lab/ in a release), every program tracing into ``log``."""
    from .launch import put_files, run_client, run_session, serving
    if scenario.library:
        drive_failures(log, workdir=workdir)
    elif scenario.clients == 1:
        run_session(log, list(scenario.script), scenario.server_files, scenario.client_files,
                    server_args=scenario.server_args, workdir=workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="ftpkit-reference-", dir=workdir) as tmp:
            root = Path(tmp, "server")
            root.mkdir()
            put_files(root, scenario.server_files)
            with serving(log, root, scenario.server_args, workdir=tmp) as port:
                clients = []
                for n in range(scenario.clients):
                    home = Path(tmp, f"client-{n}")
                    home.mkdir()
                    put_files(home, scenario.client_files)
                    clients.append(run_client(log, port, list(scenario.script), home, wait=False))
                for client in clients:
                    client.communicate(timeout=120)


def drive_failures(log, download_to=None, workdir=None) -> None:
    """The ``failures`` scenario: this process is the client, through the
    client library, against a server that drops every data connection after
    100,000 bytes. It asks for a missing file (550), sends RETR with no PASV
    or PORT before it (425), then gets a file the server breaks (426)."""
    import importlib
    from . import tracer
    from .launch import IMPLEMENTATION, put_files, serving
    ftpclient = importlib.import_module(f"{IMPLEMENTATION}.ftpclient")
    scenario = SCENARIOS["failures"]
    with tempfile.TemporaryDirectory(prefix="ftpkit-reference-", dir=workdir) as tmp:
        root = Path(tmp, "server")
        root.mkdir()
        put_files(root, scenario.server_files)
        with serving(log, root, scenario.server_args, workdir=tmp) as port:
            tracer.start(log, "client")
            try:
                client = ftpclient.FtpClient("127.0.0.1", port)
                client.connect()
                client.login()
                client.command("RETR", "missing.bin")
                client.command("RETR", "photo.bin")
                try:
                    client.get("photo.bin", str(download_to or Path(tmp, "photo.bin")))
                except ftpclient.FtpError:
                    pass                  # the 426: what this scenario is for
                client.quit()
            finally:
                tracer.stop()


def failed_replies(log) -> list[tuple[str, int, str]]:
    """(command, code, reply line) of every 4xx and 5xx reply the client got, in order."""
    from .reader import load
    rows, asked = [], {}
    for event in load(log):
        if event.get("role") != "client":
            continue
        if event["type"] == "command":
            asked[event.get("pid")] = event.get("text", "")
        elif event["type"] == "reply" and isinstance(event.get("code"), int) and event["code"] >= 400:
            line = event.get("text", "")
            if not line.startswith(str(event["code"])):
                line = f"{event['code']} {line}".strip()
            rows.append((asked.get(event.get("pid"), "(greeting)"), event["code"], line))
    return rows


def record_scenario(scenario: Scenario, directory: Path) -> tuple[Path, Path | None]:
    """Record one scenario with this kit's implementation, captured if this machine may."""
    from .record import capturing
    log, pcap = directory / f"{scenario.name}.log", directory / f"{scenario.name}.pcap"
    for path in (log, pcap):
        path.unlink(missing_ok=True)
    with capturing(pcap, log=log, say=None) as capture:
        run_scenario(scenario, log)
    return log, (pcap if capture is not None else None)


def record_all(directory: Path = REFERENCE_DIR) -> list[str]:
    from .record import IMPLEMENTATION
    if IMPLEMENTATION != "solutions":
        raise RuntimeError("recording the reference needs the reference: run this in the instructor's kit")
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for scenario in SCENARIOS.values():
        log, pcap = record_scenario(scenario, directory)
        lines.append(f"{log.relative_to(REPO_ROOT)}" + (f" + {pcap.name}" if pcap else " (no capture)")
                     + f": {len(conversation(log))} replies")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trace.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", action="store_true",
                        help="re-record every scenario with the reference (the kit, as root for captures)")
    parser.add_argument("--json", action="store_true", help="list the scenarios as JSON")
    args = parser.parse_args(argv)
    if args.record:
        try:
            for line in record_all():
                print(line)
        except RuntimeError as err:
            print(f"trace.reference: {err}", file=sys.stderr)
            return 2
        return 0
    rows = []
    for scenario in SCENARIOS.values():
        log = REFERENCE_DIR / f"{scenario.name}.log"
        pcap = log.with_suffix(".pcap")
        rows.append({"name": scenario.name, "script": list(scenario.script), "clients": scenario.clients,
                     "server_args": list(scenario.server_args),
                     "log": str(log.relative_to(REPO_ROOT)) if log.exists() else None,
                     "pcap": str(pcap.relative_to(REPO_ROOT)) if pcap.exists() else None})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        where = (f"{row['log']}" + (f" + {Path(row['pcap']).name}" if row["pcap"] else "")) if row["log"] else "(not recorded)"
        extra = (f", {row['clients']} clients" if row["clients"] > 1 else "") + \
                (f", server {' '.join(row['server_args'])}" if row["server_args"] else "")
        print(f"{row['name']:<12} {where:<46} {'; '.join(row['script'])}{extra}")
    print(f"\nsee one:  python -m trace.view {REFERENCE_DIR.relative_to(REPO_ROOT)}/passive.log "
          f"--pcap {REFERENCE_DIR.relative_to(REPO_ROOT)}/passive.pcap")
    return 0


if __name__ == "__main__":
    sys.exit(main())
