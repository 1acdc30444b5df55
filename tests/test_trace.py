"""The trace: what server and client write, and that it can be trusted."""

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

import pytest

import trace
from conftest import REPO_ROOT, run_client
from trace.schema import EVENTS
from trace.validate import problems


@pytest.fixture
def traced_session(server_process, server_root, client_dir, tmp_path):
    """A real session: server and client in two processes, one shared log."""
    log = tmp_path / "session.log"
    (client_dir / "up.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (server_root / "down.bin").write_bytes(os.urandom(2 * 1024 * 1024 + 5))
    server = server_process(server_root, trace_log=log)
    result = run_client(server.host, server.port,
                        ["ls", "put up.bin", "get down.bin", "get missing.bin", "passive",
                         "get down.bin again.bin", "quit"],
                        client_dir, "--trace", str(log), "--password", "s3cret-pw")
    server.stop()
    assert "221 Goodbye." in result.stdout, result.stdout + result.stderr
    return log, list(trace.load(log))


def test_every_line_is_valid_json_of_the_schema(traced_session):
    log, events = traced_session
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b""                     # every line ends in a newline
    for line in lines[:-1]:
        event = json.loads(line)                # no two writes interleaved
        assert problems(event) == [], event
    assert len(events) == len(lines) - 1
    headers = [e for e in events if e.type == "header"]
    assert sorted(h.role for h in headers) == ["client", "server"]
    assert len({h.pid for h in headers}) == 2


def test_events_are_merged_in_time_order_with_per_process_sequence(traced_session):
    _, events = traced_session
    times = [e.t for e in events]
    assert times == sorted(times)
    by_pid = defaultdict(list)
    for event in events:
        by_pid[event.pid].append(event.seq)
    for seqs in by_pid.values():
        assert seqs == list(range(len(seqs)))
    assert all(re.fullmatch(r"\d+\.\d{1,6}", json.dumps(e.t)) for e in events)


def test_send_offsets_are_contiguous_and_add_up_to_the_bytes_moved(traced_session):
    _, events = traced_session
    next_offset = {}
    totals = defaultdict(int)
    for event in events:
        if event.type in ("send", "recv"):
            key = (event.pid, event.conn, event.dir)
            assert event.offset == next_offset.get(key, 0), event
            next_offset[key] = event.offset + event.len
            totals[key] += event.len
    closes = [e for e in events if e.type == "close" and e.remote]
    assert closes
    for close in closes:
        assert close.sent == totals[(close.pid, close.conn, "out")]
        assert close.received == totals[(close.pid, close.conn, "in")]
    # The bytes of each finished transfer are the bytes its data connection carried.
    for end in (e for e in events if e.type == "transfer_end" and e.verdict != "aborted"):
        direction = "out" if (end.role == "server") == (end.direction != "upload") else "in"
        assert totals[(end.pid, end.conn, direction)] == end.bytes


def test_file_bytes_travel_only_on_data_connections(traced_session):
    _, events = traced_session
    control_bytes = sum(e.len for e in events if e.type == "send" and e.channel == "control")
    data_bytes = sum(e.len for e in events if e.type == "send" and e.channel == "data")
    assert control_bytes < 5000
    assert data_bytes >= 3 * 1024 * 1024 + 2 * (2 * 1024 * 1024)


def test_one_data_connection_per_transfer_and_one_control_connection(traced_session):
    _, events = traced_session
    client_connects = [e for e in events if e.role == "client" and e.type in ("connect", "accept")]
    assert [e.channel for e in client_connects].count("control") == 1
    # ls, put, get, get of a missing file, get in active mode. In passive mode
    # the client connects before it sends RETR (as ftplib does), so even the
    # missing file costs a connection, which the server never accepts: it
    # answers 550 and closes its listener.
    assert [e.channel for e in client_connects].count("data") == 5
    server_data = [e for e in events if e.role == "server" and e.type in ("connect", "accept")
                   and e.channel == "data"]
    assert len(server_data) == 4
    active = [e for e in client_connects if e.type == "accept"]
    assert len(active) == 1 and active[0].channel == "data"
    server_listeners = [e for e in events if e.role == "server" and e.type == "listen" and e.channel == "data"]
    closed = {(e.pid, e.conn) for e in events if e.type == "close"}
    assert server_listeners and all((e.pid, e.conn) in closed for e in server_listeners)


def test_control_events_carry_the_command_text_and_hide_the_password(traced_session):
    log, events = traced_session
    commands = [(e.role, e.text) for e in events if e.type == "command"]
    assert ("client", "RETR down.bin") in commands and ("server", "RETR down.bin") in commands
    assert ("server", "STOR up.bin") in commands
    assert ("client", "PASS ****") in commands
    replies = [e for e in events if e.type == "reply" and e.role == "client"]
    assert any(r.code == 550 for r in replies)
    assert any(r.code == 227 and "Entering Passive Mode" in r.text for r in replies)
    assert b"s3cret-pw" not in log.read_bytes()


def test_transfer_events_record_path_bytes_and_verdict(traced_session, client_dir):
    _, events = traced_session
    ends = {(e.role, e.command, e.path): e for e in events if e.type == "transfer_end"}
    download = ends[("client", "RETR", "down.bin")]
    assert download.verdict == "verified" and download.bytes == 2 * 1024 * 1024 + 5
    assert download.sha256 == hashlib.sha256((client_dir / "down.bin").read_bytes()).hexdigest()
    assert ends[("server", "STOR", "/up.bin")].verdict == "ok"
    assert [e.verdict for e in events if e.type == "transfer_end" and e.command == "RETR"
            and e.path.endswith("missing.bin")] == ["aborted"]


def test_many_writers_on_one_log_never_interleave(tmp_path):
    """Threads in two processes append long lines at once; each line stays whole."""
    log = tmp_path / "shared.log"
    code = (
        "import sys, threading, trace\n"
        "t = trace.start(sys.argv[1], sys.argv[2])\n"
        "def work(n):\n"
        "    for i in range(300): t.emit('error', message=f'{n}:{i}:' + 'x' * 3000)\n"
        "threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]\n"
        "[th.start() for th in threads]; [th.join() for th in threads]\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(log), role], cwd=REPO_ROOT)
             for role in ("server", "client")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    lines = log.read_bytes().splitlines()
    assert len(lines) == 2 * (1 + 4 * 300)
    assert all(problems(json.loads(line)) == [] for line in lines)


def test_reader_skips_a_truncated_last_line_and_merges_logs(tmp_path):
    one, two = tmp_path / "a.log", tmp_path / "b.log"
    one.write_text('{"type":"header","t":1.0,"seq":0,"role":"server","pid":1,"format":"ftpkit-trace","schema":1,"host":"h","start":1.0}\n'
                   '{"type":"error","t":3.0,"seq":1,"role":"server","pid":1,"message":"late"}\n'
                   '{"type":"error","t":4.0,"seq":2,"ro')
    two.write_text('{"type":"header","t":2.0,"seq":0,"role":"client","pid":2,"format":"ftpkit-trace","schema":1,"host":"h","start":2.0}\n')
    assert [e.t for e in trace.load(one, two)] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("content,message", [
    (b"", "the log is empty"),
    (b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(100), "pcap capture"),
])
def test_reader_names_the_file_and_the_problem(tmp_path, content, message):
    bad = tmp_path / "bad.log"
    bad.write_bytes(content)
    with pytest.raises(trace.TraceError, match=message) as err:
        list(trace.load(bad))
    assert str(bad) in str(err.value)


def test_tracing_off_leaves_sockets_untouched():
    import socket
    trace.stop()
    with socket.socket() as raw:
        assert trace.connected(raw, "data") is raw


def test_schema_document_and_schema_table_agree():
    text = (REPO_ROOT / "trace" / "SCHEMA.md").read_text()
    documented = set(re.findall(r"^## `(\w+)`", text, re.M))
    for heading in re.findall(r"^## `(\w+)` and `(\w+)`", text, re.M):
        documented.update(heading)
    assert documented == set(EVENTS)


def test_validator_command_line(traced_session):
    log, _ = traced_session
    ok = subprocess.run([sys.executable, "-m", "trace.schema", str(log)], cwd=REPO_ROOT,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip().endswith("ok")
    bad = log.with_name("bad.log")
    bad.write_text(log.read_text().replace('"channel":"data"', '"channel":"wrong"', 1))
    result = subprocess.run([sys.executable, "-m", "trace.schema", str(bad)], cwd=REPO_ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 1 and "channel must be one of" in result.stdout


def test_reader_reports_an_event_it_cannot_place_in_time(tmp_path):
    log = tmp_path / "odd.log"
    log.write_text('{"type":"error","t":"soon","seq":0,"role":"server","pid":1,"message":"x"}\n'
                   '{"type":"error","t":2.0,"seq":1,"role":"server","pid":1,"message":"y"}\n')
    problems = []
    assert [e.message for e in trace.load(log, on_problem=problems.append)] == ["y"]
    assert [(p.lineno, "'t'" in p.message) for p in problems] == [(1, True)]


def test_a_listing_is_recorded_from_start_to_end(traced_session):
    _, events = traced_session
    ends = [e for e in events if e.type == "transfer_end" and e.role == "client" and e.command == "LIST"]
    assert len(ends) == 1 and ends[0].verdict == "ok" and ends[0].path == "." and ends[0].bytes > 0


def test_data_reads_are_logged_in_batches_with_exact_offsets(traced_session):
    """A 2 MiB download takes dozens of reads but only a few recv events."""
    _, events = traced_session
    download = next(e for e in events if e.type == "transfer_end" and e.role == "client"
                    and e.command == "RETR" and e.path == "down.bin")
    recvs = [e for e in events if e.type == "recv" and e.role == "client" and e.conn == download.conn]
    assert sum(e.len for e in recvs) == download.bytes == 2 * 1024 * 1024 + 5
    assert recvs[-1].len == 0                                  # the FIN, logged on its own
    assert 2 <= len(recvs) - 1 <= 4                            # batches of about 1 MiB
    assert all(a.offset + a.len == b.offset for a, b in zip(recvs, recvs[1:]))


def test_import_trace_loads_only_the_tracer():
    """A traced server imports trace to write; reading and correlating load on first use."""
    code = ("import sys, trace\n"
            "print(sorted(m for m in sys.modules if m == 'trace' or m.startswith('trace.')))\n"
            "print(any(m.startswith('scapy') for m in sys.modules))\n"
            "trace.load, trace.TraceError, trace.correlate.correlate\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded, scapy_loaded = result.stdout.split("\n")[:2]
    # The tracer, its line tap, and the one parser of reply lines it uses.
    assert loaded == "['trace', 'trace.addresses', 'trace.announce', 'trace.linetap', 'trace.tracer']"
    assert scapy_loaded == "False"


def test_transfer_end_is_written_one_way(tmp_path):
    """trace.transfer_end names the connections from the sockets and times the transfer."""
    import socket
    import time
    log = tmp_path / "ends.log"
    tracer = trace.start(log, "server")
    try:
        with socket.create_server(("127.0.0.1", 0)) as listener, \
                socket.create_connection(listener.getsockname()) as peer:
            raw, _ = listener.accept()
            data = trace.connected(raw, "data")
            started = time.monotonic()
            trace.transfer_end("RETR", "/a.bin", "download", moved=10, started=started,
                               verdict="ok", data=data, control=None)
            trace.transfer_end("STOR", "b.bin", "upload", moved=3, duration=0.25,
                               verdict="aborted", data=None, control=data.conn)
            data.close()
    finally:
        trace.stop()
    end, upload = [e for e in trace.load(log) if e.type == "transfer_end"]
    assert problems(end) == [] and problems(upload) == []
    assert (upload.duration, upload.conn, upload.control) == (0.25, None, data.conn)
    assert (end.command, end.path, end.bytes, end.verdict) == ("RETR", "/a.bin", 10, "ok")
    assert end.conn == data.conn and end.control is None and end.sha256 is None
    assert 0 <= end.duration < 60 and end.pid == tracer.pid
