"""Run the shell commands of a document's ```bash blocks, as a student would.

    python tests/handout_commands.py RELEASE_DIR DOC.md [DOC.md ...]   # prints JSON results

Used by tests/test_handout_commands.py, which runs it inside a network
namespace of its own when it can (root), so that the documents' fixed port
2121 is free and nothing else on the machine can answer on it.

Each line of a ```bash block is one command, run with bash in the release
folder, in document order (a later command may use what an earlier one
made). Three kinds are run differently:

- a server (``python -m lab.server ...``) is long-running: it is started in a
  session of its own, kept running for the commands after it (the documents
  say "in one terminal ... in another"), and stopped at the end; it counts as
  working when it prints ``listening on``;
- an interactive client (``python -m lab.client ...`` not fed by a pipe) gets
  scripted input, ``ls`` then ``quit``;
- everything else runs to completion, within a time limit.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND_TIMEOUT = 600.0       # a grading run of the starter on a busy machine
SERVER_START_TIMEOUT = 30.0
SCRIPTED_INPUT = "ls\nquit\n"

BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.DOTALL | re.MULTILINE)


def commands(document: str) -> list[str]:
    """The commands of every ```bash block, one per non-empty line."""
    lines = []
    for block in BASH_BLOCK.findall(document):
        for line in block.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.strip())
    return lines


def is_server(command: str) -> bool:
    return "python -m lab.server" in command and "|" not in command


def is_interactive_client(command: str) -> bool:
    return "python -m lab.client" in command and "|" not in command and "<" not in command


def _port(command: str) -> str | None:
    words = command.split("#")[0].split()
    return words[-1] if words and words[-1].isdigit() else None


class Servers:
    """Long-running commands, each in its own process group, by port."""

    def __init__(self):
        self.running: dict[str | None, subprocess.Popen] = {}

    def start(self, command: str, cwd: Path, env: dict) -> dict:
        port = _port(command)
        self.stop(port)                      # the same terminal, started again
        process = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.running[port] = process
        output, deadline = b"", time.monotonic() + SERVER_START_TIMEOUT
        while b"\n" not in output and time.monotonic() < deadline and process.poll() is None:
            ready, _, _ = select.select([process.stdout], [], [], 0.2)
            if ready:
                output += os.read(process.stdout.fileno(), 4096)
        text = output.decode(errors="replace")
        return {"kind": "server", "returncode": process.poll(), "output": text,
                "started": text.startswith("listening on "), "timed_out": False}

    def stop(self, port=None) -> None:
        for key in ([port] if port is not None else list(self.running)):
            process = self.running.pop(key, None)
            if process is None:
                continue
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            process.stdout.close()


def run_command(command: str, cwd: Path, env: dict, servers: Servers) -> dict:
    started = time.monotonic()
    result = _run_command(command, cwd, env, servers)
    result["seconds"] = round(time.monotonic() - started, 2)      # where a slow document's time goes
    return result


def _run_command(command: str, cwd: Path, env: dict, servers: Servers) -> dict:
    if is_server(command):
        return servers.start(command, cwd, env)
    interactive = is_interactive_client(command)
    process = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env,
                               stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(SCRIPTED_INPUT.encode() if interactive else None,
                                        timeout=COMMAND_TIMEOUT)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        timed_out = True
    return {"kind": "interactive" if interactive else "command", "returncode": process.returncode,
            "output": output.decode(errors="replace"), "timed_out": timed_out}


def run_documents(release: Path, documents: list[Path], port: str | None = None) -> list[dict]:
    """Every command of every document, in order, in ``release``. ``port``:
    run on this port instead of the documents' 2121 (no namespace of our own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PYTHONPATH"))}
    env["COLUMNS"] = "100"
    # What the commands leave in the temporary folder (pytest's runs, say)
    # goes in one of our own, removed at the end.
    scratch = tempfile.mkdtemp(prefix="ftpkit-handout-")
    env["TMPDIR"] = scratch
    results = []
    servers = Servers()
    try:
        for document in documents:
            for command in commands(document.read_text(encoding="utf-8")):
                actual = command.replace("2121", port) if port else command
                result = run_command(actual, release, env, servers)
                result.update(document=document.name, command=command)
                results.append(result)
            servers.stop()
    finally:
        servers.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def main(argv: list[str]) -> int:
    port = None
    if argv and argv[0].startswith("--port="):
        port, argv = argv[0].split("=", 1)[1], argv[1:]
    release, documents = Path(argv[0]), [Path(a) for a in argv[1:]]
    json.dump(run_documents(release, documents, port), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
