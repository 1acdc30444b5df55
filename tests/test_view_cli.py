"""The ``python -m trace.view`` command line: options, bad input, --follow,
--step and --replay. Most tests call ``main(argv)`` in this process; a few run
the real command in a subprocess, as a student would.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from trace.view import main
from tests.view_sessions import passive_session

REPO_ROOT = Path(__file__).resolve().parent.parent
WIDTH = "100"
# Every line a bad input puts on stderr: "FILE: message" or "FILE:LINE: message".
PROBLEM_LINE = re.compile(r"^\S+?(:\d+)?: \S.*$")


@pytest.fixture
def log(tmp_path) -> Path:
    path = tmp_path / "session.log"
    passive_session().write(path)
    return path


def view(capsys, *argv) -> tuple[int, str, str]:
    status = main(["--width", WIDTH, "--no-color", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def run_view(*argv, input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trace.view", *map(str, argv)], cwd=REPO_ROOT,
                          input=input, capture_output=True, text=True, timeout=timeout)


def follow_while(capsys, writer, live: Path, timeout: float = 1.0) -> tuple[int, str, str]:
    """Run ``--follow`` on ``live`` while ``writer`` runs in a thread."""
    thread = threading.Thread(target=writer)
    thread.start()
    status = main(["--follow", "--follow-timeout", str(timeout), "--width", WIDTH, "--no-color",
                   str(live)])
    thread.join()
    out, err = capsys.readouterr()
    return status, out, err


def diagram_rows(out: str) -> list[str]:
    """The rows of the diagram (they start with the time since the first event)."""
    return [line for line in out.splitlines() if re.match(r"^ *\d+\.\d{6} ", line)]


# --- it works ----------------------------------------------------------------------------

def test_the_command_draws_the_diagram_then_the_summary(tmp_path, log):
    result = run_view("--width", WIDTH, log)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert out.index("USER anna") < out.index("Connections") < out.index("Transfers")
    assert "201.8 KiB @ 0–206607 in 4 segments" in out


def test_standard_input_is_a_log_too(log):
    result = run_view("--width", WIDTH, "-", input=log.read_text())
    assert result.returncode == 0, result.stderr
    assert "RETR a.bin" in result.stdout


def test_summary_only(capsys, log):
    status, out, _ = view(capsys, "--summary", log)
    assert status == 0
    assert diagram_rows(out) == []
    assert "Connections" in out and "206,608 B" in out


def test_channel_filter(capsys, log):
    _, control, _ = view(capsys, "--channel", "control", log)
    assert "USER anna" in control and "201.8 KiB @" not in control
    _, data, _ = view(capsys, "--channel", "data", log)
    assert "USER anna" not in data and "201.8 KiB @" in data
    assert "#1 control" not in data.split("Connections")[1]


def test_connection_filter(capsys, log):
    status, out, _ = view(capsys, "--conn", "#2", log)
    assert status == 0
    rows = diagram_rows(out)
    assert rows and all("#2" in row or "@" in row or "RETR a.bin:" in row for row in rows), rows
    assert "USER anna" not in out


def test_json_reemits_the_filtered_events(capsys, tmp_path, log):
    status, out, _ = view(capsys, "--json", "--channel", "data", log)
    assert status == 0
    events = [json.loads(line) for line in out.splitlines()]
    kinds = {e["type"] for e in events}
    assert {"header", "connect", "accept", "send", "recv", "close", "transfer_end"} <= kinds
    assert all(e.get("channel", "data") == "data" for e in events)
    # The output is a log in its own right.
    again = tmp_path / "data-only.log"
    again.write_text(out)
    status, out, _ = view(capsys, "--summary", again)
    assert status == 0 and "201.8 KiB" in out and "control" not in out.split("Connections")[1]


def test_json_by_connection(capsys, log):
    _, out, _ = view(capsys, "--json", "--conn", "1", log)
    events = [json.loads(line) for line in out.splitlines()]
    assert {e["conn"] for e in events if e["type"] != "header"} == {1, 2}   # client 1, server 2
    assert all(e.get("channel") == "control" for e in events if e["type"] != "header")


def test_width_is_respected(capsys, log):
    status = main(["--width", "60", "--no-color", str(log)])
    out, _ = capsys.readouterr()
    assert status == 0
    assert max(len(line) for line in out.splitlines()) <= 60


@pytest.mark.parametrize("suffix", [".svg", ".html", ".txt"])
def test_export(capsys, tmp_path, log, suffix):
    target = tmp_path / f"out{suffix}"
    status, out, _ = view(capsys, "--export", target, log)
    assert status == 0
    saved = target.read_text(encoding="utf-8")
    assert "USER" in saved and "550" in saved
    if suffix == ".txt":
        assert saved == out


def test_export_refuses_other_formats(capsys, tmp_path, log):
    status, _, err = view(capsys, "--export", tmp_path / "out.png", log)
    assert status == 2 and "--export" in err


# --- bad input ---------------------------------------------------------------------------

def assert_one_clear_line(err: str, *expected: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert PROBLEM_LINE.match(lines[0]), lines[0]
    for part in expected:
        assert part in lines[0], lines[0]


def test_missing_file(capsys, tmp_path):
    missing = tmp_path / "nope.log"
    status, out, err = view(capsys, missing)
    assert status == 2
    assert out == ""
    assert_one_clear_line(err, str(missing), "no such file")


def test_empty_file(capsys, tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    status, _, err = view(capsys, empty)
    assert status == 2
    assert_one_clear_line(err, str(empty), "empty")


def test_a_pcap_passed_by_mistake(capsys):
    pcap = REPO_ROOT / "trace" / "samples" / "capture.pcap"
    status, _, err = view(capsys, pcap)
    assert status == 2
    assert_one_clear_line(err, str(pcap), "pcap", "not a trace log")


def test_other_binary(capsys, tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 4)
    status, _, err = view(capsys, blob)
    assert status == 2
    assert_one_clear_line(err, str(blob), "binary")


def test_a_directory(capsys, tmp_path):
    status, _, err = view(capsys, tmp_path)
    assert status == 2
    assert_one_clear_line(err, "directory")


def insert_line(path: Path, index: int, line: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(index, line)
    path.write_text("".join(lines))


def test_a_line_that_is_not_json(capsys, log):
    insert_line(log, 4, "this is not json\n")
    status, out, err = view(capsys, log)
    assert status == 0                                  # the rest is still shown
    assert_one_clear_line(err, f"{log}:5:", "not JSON")
    assert "client closes #1" in out


def test_an_unknown_event_type_is_shown_as_is(capsys, log):
    odd = {"type": "telemetry", "t": 1_700_000_000.0105, "seq": 99, "role": "server",
           "pid": 4002, "cpu": 0.5}
    insert_line(log, 10, json.dumps(odd) + "\n")
    status, out, err = view(capsys, log)
    assert status == 0
    assert_one_clear_line(err, f"{log}:11:", "unknown event type 'telemetry'")
    assert '? telemetry {"cpu":0.5}' in out


def test_a_newer_schema_version(capsys, tmp_path):
    newer = tmp_path / "newer.log"
    script = passive_session()
    for event in script.events:
        if event["type"] == "header":
            event["schema"] = 99
    script.write(newer)
    status, out, err = view(capsys, newer)
    assert status == 2                                  # nothing we can read
    lines = err.splitlines()
    assert len(lines) == 2 and all(PROBLEM_LINE.match(line) for line in lines)
    assert f"{newer}:1: schema version 99 is newer" in lines[0]
    assert "USER anna" not in out


def test_a_truncated_last_line(capsys, log):
    whole = log.read_bytes()
    last_line_number = whole.count(b"\n") + 1
    log.write_bytes(whole + b'{"type":"send","t":1700000000.04,"se')
    status, out, err = view(capsys, log)
    assert status == 0
    assert_one_clear_line(err, f"{log}:{last_line_number}:", "cut off")
    assert "client closes #1" in out


def test_a_field_of_the_wrong_type(capsys, log):
    insert_line(log, 6, json.dumps({"type": "send", "t": "yesterday", "seq": 1, "role": "client",
                                    "pid": 4001}) + "\n")
    insert_line(log, 8, json.dumps({"type": "send", "t": 1_700_000_000.0051, "seq": 1,
                                    "role": "client", "pid": 4001, "conn": 1}) + "\n")
    status, out, err = view(capsys, log)
    assert status == 0
    lines = err.splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert f"{log}:7:" in lines[0] and "'t'" in lines[0]
    assert f"{log}:9:" in lines[1] and "lacks field" in lines[1]


def test_nothing_but_garbage(capsys, tmp_path):
    junk = tmp_path / "junk.log"
    junk.write_text("".join(f"not json {n}\n" for n in range(30)))
    status, _, err = view(capsys, junk)
    assert status == 2
    lines = err.splitlines()
    # One line per problem up to a limit, then a count of the rest.
    assert len(lines) == 21 and lines[-1] == f"{junk}: 10 more problems not shown"


def test_one_bad_log_among_good_ones(capsys, tmp_path, log):
    status, out, err = view(capsys, tmp_path / "nope.log", log)
    assert status == 0
    assert_one_clear_line(err, "nope.log", "no such file")
    assert "USER anna" in out


def test_bad_input_in_a_subprocess_gives_no_traceback(tmp_path):
    result = run_view(REPO_ROOT / "trace" / "samples" / "capture.pcap")
    assert result.returncode == 2
    assert_one_clear_line(result.stderr, "pcap")


def test_a_closed_pipe_is_not_an_error(tmp_path):
    big = tmp_path / "big.log"
    passive_session().write(big)
    command = f"{sys.executable} -m trace.view --verbose --width 100 {big} | head -n 2"
    result = subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=30)
    assert len(result.stdout.splitlines()) == 2
    assert "Traceback" not in result.stderr and "Error" not in result.stderr


# --- live and in class -------------------------------------------------------------------

def test_follow_shows_lines_appended_while_it_runs(capsys, tmp_path):
    full = tmp_path / "full.log"
    passive_session().write(full)
    lines = full.read_bytes().splitlines(keepends=True)
    live = tmp_path / "live.log"
    live.write_bytes(b"".join(lines[:20]))

    def writer():
        with open(live, "ab") as out:
            time.sleep(0.4)
            out.write(b"".join(lines[20:60]))
            out.flush()
            time.sleep(0.4)
            # One line arrives in two writes: the viewer must wait for the whole.
            out.write(lines[60][:25])
            out.flush()
            time.sleep(0.3)
            out.write(lines[60][25:] + b"".join(lines[61:]))
            out.flush()

    started = time.monotonic()
    status, out, err = follow_while(capsys, writer, live)
    assert status == 0
    assert err == ""
    assert time.monotonic() - started >= 1.1             # it waited for the writer
    assert "USER anna" in out                            # written before it started
    assert "201.8 KiB @ 0–206607" in out                 # written while it ran
    assert "client closes #1" in out                     # the last line
    assert out.index("client closes #1") < out.index("Connections")


def test_step_shows_one_row_per_enter_and_quits_on_q(log):
    result = run_view("--step", "--width", WIDTH, "--no-color", log, input="\n\nq\n")
    assert result.returncode == 0, result.stderr
    rows = diagram_rows(result.stdout)
    assert len(rows) == 3, result.stdout
    assert "server pid 4002 starts tracing" in rows[0]
    assert "Connections" not in result.stdout
    assert result.stderr.count("Enter") == 3            # a prompt after each row


def test_step_to_the_end(log):
    result = run_view("--step", "--width", WIDTH, "--no-color", log, input="\n" * 200)
    assert result.returncode == 0
    assert "client closes #1" in result.stdout and "Connections" in result.stdout


def test_step_needs_the_log_in_a_file(capsys):
    status, _, err = view(capsys, "--step", "-")
    assert status == 2 and "--step" in err


def test_replay_keeps_the_recorded_pace(capsys, log):
    _, plain, _ = view(capsys, log)
    started = time.monotonic()
    status, replayed, _ = view(capsys, "--replay", "0.5", log)
    elapsed = time.monotonic() - started
    assert status == 0
    assert replayed == plain
    assert elapsed >= 0.033 / 0.5 * 0.9                  # 33 ms of session at half speed


def test_follow_waits_for_the_log_and_follows_a_new_one(capsys, tmp_path):
    """As with trace.demo: the viewer starts first, and each demo run deletes
    the old log and writes a new one at the same path."""
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    passive_session().write(first)
    from tests.view_sessions import active_session
    active_session().write(second)
    live = tmp_path / "live.log"

    def writer():
        time.sleep(0.3)
        live.write_bytes(first.read_bytes())
        time.sleep(0.5)
        live.unlink()
        live.write_bytes(second.read_bytes())

    status, out, err = follow_while(capsys, writer, live)
    assert status == 0
    assert err.splitlines() == [f"{live}: waiting for the log to appear",
                                f"{live}: replaced by a new log; following that"]
    assert "RETR a.bin" in out and "STOR up.txt" in out


def test_replay_speed_is_optional(capsys, log):
    _, plain, _ = view(capsys, log)
    status, replayed, _ = view(capsys, "--replay", log)
    assert status == 0 and replayed == plain
    status, _, err = view(capsys, "--replay", "2")
    assert status == 2 and "LOG" in err


def test_pcap_shows_the_segments_under_the_events(capsys):
    samples = REPO_ROOT / "trace" / "samples"
    status, out, err = view(capsys, samples / "session.log", "--pcap", samples / "capture.pcap")
    assert status == 0, err
    assert "SYN" in out and "RETR" in out and "Connections" in out


def test_pcap_that_is_not_a_capture(capsys, log):
    status, _, err = view(capsys, log, "--pcap", log)
    assert status == 2
    assert_one_clear_line(err, str(log))
