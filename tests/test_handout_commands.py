"""Every command in the handout (lab/README.md) and the release's README works
as written, in a fresh release: with the untouched starter, and with the
solutions copied in as lab/ (a student who did every exercise).

The commands are run by tests/handout_commands.py, in document order, in a
network namespace of its own when this test runs as root (so the documents'
port 2121 is ours alone); otherwise on a free port put in place of 2121.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.release_helpers import make_release

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNNER = REPO_ROOT / "tests" / "handout_commands.py"
DOCUMENTS = ["README.md", "lab/README.md"]     # in the release: its README, then the handout

sys.path.insert(0, str(RUNNER.parent))
from handout_commands import commands  # noqa: E402


def can_use_a_namespace() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("ip") is not None


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def run_in_release(release: Path) -> list[dict]:
    documents = [str(release / d) for d in DOCUMENTS]
    runner = [sys.executable, str(RUNNER)]
    if can_use_a_namespace():
        # A private loopback: port 2121 as written, and nothing outside to answer on it.
        script = 'ip link set lo up && exec "$@"'
        argv = ["unshare", "--net", "--", "sh", "-c", script, "sh", *runner, str(release), *documents]
    else:
        argv = [*runner, f"--port={free_port()}", str(release), *documents]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd=release)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def show(result: dict) -> str:
    return (f"{result['document']}: `{result['command']}` -> status {result['returncode']}"
            f"{' (timed out)' if result['timed_out'] else ''}\n{result['output'][-2500:]}")


def grading_summary(output: str) -> str:
    lines = [line for line in output.splitlines()
             if re.search(r"\d+ (passed|failed|errors?|deselected)\b.* in [\d.]+s", line)]
    return lines[-1] if lines else ""


def needs_the_lab(command: str) -> bool:
    """Commands that run the student's code (which, in the starter, fails)."""
    return any(word in command for word in ("lab.client", "python -c", "pytest", "lab.server"))


def test_the_documents_have_commands_and_name_only_what_a_release_has(tmp_path):
    release = make_release(tmp_path / "release")
    readme = (release / "README.md").read_text(encoding="utf-8")
    handout = (release / "lab/README.md").read_text(encoding="utf-8")
    assert commands(readme) and commands(handout)
    for text in (readme, handout):
        for absent in ("solutions", "bugs.toml", "nc -C", "nc 127", "tests/grading/hidden"):
            assert absent not in text, absent
    # Every path a command names exists in the release (or is made by an earlier command).
    for command in commands(readme) + commands(handout):
        for path in re.findall(r"\b(?:trace|tests|lab|notebooks)/[\w./-]+", command):
            assert (release / path).exists(), (command, path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, list[dict]]]:
    """Every command of both documents, in a fresh release with the starter and
    in one with every exercise done: the two at once (each in a network
    namespace of its own as root; a free port each otherwise), since most of
    a run is waiting on servers and gradings."""
    folder = tmp_path_factory.mktemp("handout")
    releases = {"starter": make_release(folder / "starter"), "solved": make_release(folder / "solved", solved=True)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = {kind: pool.submit(run_in_release, release) for kind, release in releases.items()}
        return {kind: (releases[kind], future.result()) for kind, future in done.items()}


@pytest.mark.timeout(1800)
def test_every_command_works_with_the_starter(runs):
    release, results = runs["starter"]
    assert results
    for result in results:
        command = result["command"]
        assert not result["timed_out"], show(result)
        if result["kind"] == "server":
            assert result["started"], show(result)
        elif "pytest" in command and "--version" not in command:
            # The grading of the starter: tests fail (0 points), none errors.
            summary = grading_summary(result["output"])
            assert result["returncode"] == 1 and "failed" in summary, show(result)
            assert "error" not in summary and "passed" not in summary, show(result)
        elif command.startswith("python -m trace.demo"):
            # It runs the starter first (whose traceback it shows), then the recording.
            assert result["returncode"] == 0, show(result)
        elif not needs_the_lab(command):
            assert result["returncode"] == 0, show(result)
            assert "Traceback" not in result["output"], show(result)
    shown = [r for r in results if r["command"].startswith("python -m trace.demo")]
    assert shown and all("Showing the recorded reference session" in r["output"] for r in shown)


@pytest.mark.timeout(1800)
def test_every_command_works_with_every_exercise_done(runs):
    release, results = runs["solved"]
    assert results
    for result in results:
        assert not result["timed_out"], show(result)
        if result["kind"] == "server":
            assert result["started"], show(result)
        else:
            assert result["returncode"] == 0, show(result)
            assert "Traceback" not in result["output"], show(result)
    shown = [r for r in results if r["command"].startswith("python -m trace.demo")]
    assert shown and all("Showing your lab/'s own session" in r["output"] for r in shown)
    # The session the documents made is the one the viewer shows: the get arrived.
    assert (release / "hello.txt").read_text() == "hello from the server\n"
