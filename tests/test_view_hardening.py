"""The viewer and the reader against hostile and broken input (issue 10):
escapes a peer sent, huge or deeply nested lines, lone surrogates, a log
truncated under --follow, an export to nowhere, a flood of error replies."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

import trace
from trace.model import KEEP_ERRORS, Session
from trace.tracer import MAX_LINE_BYTES
from trace.view import main
from tests.test_view_cli import follow_while
from tests.view_sessions import HOSTILE, hostile_session, passive_session

REPO_ROOT = Path(__file__).resolve().parent.parent
# What a terminal would obey: ESC, BEL, the C1 CSI, a bidi override.
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e")


def view(capsys, *argv) -> tuple[int, str, str]:
    status = main(["--width", "160", "--no-color", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def run(module: str, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, argv)], cwd=REPO_ROOT,
                          capture_output=True, timeout=60)


@pytest.fixture
def log(tmp_path) -> Path:
    path = tmp_path / "session.log"
    passive_session().write(path)
    return path


# --- escapes --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [[], ["--summary"], ["--verbose"]])
def test_escapes_a_peer_sent_reach_the_terminal_escaped(capsys, tmp_path, mode):
    hostile = tmp_path / "hostile.log"
    hostile_session().write(hostile)
    status, out, err = view(capsys, *mode, hostile)
    assert status == 0, err
    for control in RAW_CONTROLS:
        assert control not in out + err
    shown = r"\x1b]0;pwned\x07\x1b[2J\x9b31m\u202e\ud800"
    assert out.count(shown) >= (2 if mode == ["--summary"] else 4)   # reply, path, error...
    if mode != ["--summary"]:
        assert f"USER {shown}anna" in out


def test_json_output_escapes_them_and_still_decodes_to_the_same(capsys, tmp_path):
    hostile = tmp_path / "hostile.log"
    hostile_session().write(hostile)
    status, out, _ = view(capsys, "--json", hostile)
    assert status == 0
    for control in RAW_CONTROLS:
        assert control not in out
    texts = [json.loads(line).get("text") for line in out.splitlines()]
    assert f"USER {HOSTILE}anna" in texts


def test_problems_naming_a_hostile_field_are_escaped(capsys, log):
    with open(log, "a") as out:
        out.write('{"type":"\\u001b[2J\\ud800","t":1700000000.5,"seq":0,"role":"server","pid":1}\n')
    status, out, err = view(capsys, log)
    assert status == 0
    assert "\x1b" not in err and r"\x1b[2J\ud800" in err


# --- bounds where input arrives ----------------------------------------------------------

def test_a_line_longer_than_the_limit_is_skipped_without_holding_it(tmp_path, log):
    huge = tmp_path / "huge.log"
    lines = log.read_bytes().splitlines(keepends=True)
    with open(huge, "wb") as out:
        out.writelines(lines[:5])
        out.write(b'{"type":"error","message":"' + b"x" * (6 * MAX_LINE_BYTES) + b'"}\n')
        out.writelines(lines[5:])
    problems = []
    tracemalloc.start()
    try:
        events = list(trace.load(huge, on_problem=problems.append))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(events) == len(lines)                       # everything else is read
    assert [(p.lineno, p.message) for p in problems] == [
        (6, f"line longer than {MAX_LINE_BYTES} bytes; skipped")]
    assert peak < 3 * MAX_LINE_BYTES                      # the 24 MiB line was never held


def test_the_viewer_reports_a_huge_line_in_one_line(capsys, tmp_path, log):
    with open(log, "ab") as out:
        out.write(b"[" + b" " * (MAX_LINE_BYTES + 10) + b"]\n")
    status, out, err = view(capsys, "--summary", log)
    assert status == 0
    assert err.splitlines() == [f"{log}:{len(log.read_bytes().splitlines())}: "
                                f"line longer than {MAX_LINE_BYTES} bytes; skipped"]


def test_deep_nesting_is_one_bad_line_everywhere(capsys, tmp_path, log):
    with open(log, "a") as out:
        out.write("[" * 200_000 + "]" * 200_000 + "\n")
    lineno = len(log.read_text().splitlines())
    problems = []
    assert len(list(trace.load(log, on_problem=problems.append))) == lineno - 1
    assert [(p.lineno, "nested too deeply" in p.message) for p in problems] == [(lineno, True)]
    status, _, err = view(capsys, "--summary", log)
    assert status == 0 and err == f"{log}:{lineno}: line is not JSON (nested too deeply)\n"
    checked = run("trace.schema", log)
    assert checked.returncode == 1 and b"Traceback" not in checked.stderr
    assert b"nested too deeply" in checked.stdout


def test_a_lone_surrogate_is_reported_not_a_traceback(tmp_path, log):
    with open(log, "a") as out:
        out.write('{"type":"\\ud800","t":1700000000.5,"seq":0,"role":"server","pid":1}\n')
        out.write('{"type":"error","t":1700000000.6,"seq":1,"role":"server","pid":4002,'
                  '"message":"\\udc80"}\n')
    for module, argv in (("trace.view", ["--summary"]), ("trace.view", ["--json"]),
                         ("trace.schema", [])):
        result = run(module, *argv, log)
        assert b"Traceback" not in result.stderr, (module, result.stderr)
        assert result.returncode in (0, 1), (module, result.stderr)
        assert b"\\ud800" in result.stderr + result.stdout


# --- --follow after copytruncate ----------------------------------------------------------

def test_follow_starts_again_after_the_log_is_truncated_in_place(capsys, tmp_path):
    first = tmp_path / "first.log"
    passive_session().write(first)
    second = hostile_session()
    for event in second.events:
        if event.get("text") == "QUIT":
            event["text"] = "NOOP after the rotation"
    later = tmp_path / "later.log"
    second.write(later)
    assert later.stat().st_size < first.stat().st_size
    live = tmp_path / "live.log"
    live.write_bytes(first.read_bytes())

    def rotate():
        time.sleep(0.5)
        with open(live, "r+b") as out:            # copytruncate: same file, emptied
            out.truncate(0)
        time.sleep(0.3)
        with open(live, "ab") as out:
            out.write(later.read_bytes())

    status, out, err = follow_while(capsys, rotate, live, timeout=1.5)
    assert status == 0
    assert "USER anna" in out                              # before the rotation
    assert "NOOP after the rotation" in out                # after it
    assert err == f"{live}: truncated; reading it again from the start\n"


# --- --export ---------------------------------------------------------------------------

def test_export_to_a_missing_folder_fails_before_drawing(capsys, tmp_path, log):
    target = tmp_path / "no" / "such" / "talk.svg"
    status, out, err = view(capsys, "--export", target, log)
    assert status == 2
    assert out == ""                                       # nothing drawn first
    lines = err.strip().splitlines()
    assert "Traceback" not in err and "no such folder" in lines[-1]
    assert not target.parent.exists()


# --- a flood of error replies --------------------------------------------------------------

def _error_flood(path: Path, replies: int, repeat: int | None = None) -> None:
    """A one-sided server log: a control connection answering junk with 500s."""
    with open(path, "w") as out:
        out.write('{"type":"header","t":1.0,"seq":0,"role":"server","pid":7,'
                  '"format":"ftpkit-trace","schema":1,"host":"h","start":1.0}\n')
        ends = '"conn":1,"channel":"control","local":"127.0.0.1:21","remote":"127.0.0.1:5000"'
        out.write(f'{{"type":"accept","t":1.0,"seq":1,"role":"server","pid":7,"listener":0,{ends}}}\n')
        fold = f',"repeat":{repeat}' if repeat else ""
        for n in range(replies):
            out.write(f'{{"type":"reply","t":{1.0 + n * 1e-5:.6f},"seq":{n + 2},"role":"server",'
                      f'"pid":7,{ends},"dir":"out","offset":{n * 22},"len":22,"code":500,'
                      f'"text":"500 Unknown command {n}."{fold}}}\n')


def test_a_flood_of_error_replies_keeps_the_model_small(tmp_path):
    flood = tmp_path / "flood.log"
    _error_flood(flood, 5 * KEEP_ERRORS)
    session = Session(segments=False)
    for event in trace.load(flood):
        session.feed(event)
    session.finish()
    assert session.error_count == 5 * KEEP_ERRORS
    assert len(session.errors) == KEEP_ERRORS


def test_the_summary_counts_what_it_does_not_list(capsys, tmp_path):
    flood = tmp_path / "flood.log"
    _error_flood(flood, KEEP_ERRORS + 3)
    status, out, _ = view(capsys, "--summary", flood)
    assert status == 0
    assert f"{KEEP_ERRORS + 3:,} errors" in out
    assert "… and 3 more errors not listed" in out
    assert out.count("500 Unknown command") == KEEP_ERRORS


def test_folded_replies_show_their_count(capsys, tmp_path):
    flood = tmp_path / "folded.log"
    _error_flood(flood, 2, repeat=5000)
    status, out, _ = view(capsys, flood)
    assert status == 0
    assert "500 Unknown command 0. (×5,000)" in out
    assert "10,000 errors" in out
