"""The trace stays bounded by its input: a flood of junk lines is folded."""

import json
import socket

import trace
from trace.linetap import ERROR_EVENTS_FREE, FOLD_LIMIT
from trace.validate import problems

FLOOD = 100_000          # bare line ends: far more error lines than the free budget


def _flood(server, payload: bytes, then: bytes = b"QUIT\r\n") -> int:
    """Send ``payload`` to the server, reading its replies as it goes; return bytes sent."""
    with socket.create_connection((server.host, server.port), timeout=60) as sock:
        sock.recv(1024)                                   # the 220
        sock.setblocking(False)
        sent = 0
        view = memoryview(payload + then)
        while sent < len(view):
            try:
                sent += sock.send(view[sent:sent + 65536])
            except BlockingIOError:
                pass
            try:
                while sock.recv(1 << 20):
                    pass
            except BlockingIOError:
                pass
        sock.settimeout(60)
        while sock.recv(1 << 20):                         # until the server closes after QUIT
            pass
    return len(payload) + len(then)


def test_bare_line_ends_do_not_amplify_the_log(server_process, server_root, tmp_path):
    """1 MB of bare LFs once wrote 742 MB of log (issue 10): one 225-byte
    command, send and reply event per input byte. Now past the free budget
    the junk is folded; what is left is the text of the raw recvs."""
    log = tmp_path / "flood.log"
    server = server_process(server_root, trace_log=log)
    sent = _flood(server, b"\n" * FLOOD)
    server.stop()
    size = log.stat().st_size
    assert size < 4 * sent, f"{size} bytes of log for {sent} bytes of input"

    events = list(trace.load(log))
    assert all(problems(e) == [] for e in events)
    commands = [e for e in events if e.type == "command"]
    folded = [e for e in commands if e.get("repeat")]
    assert folded and all(e.repeat <= FOLD_LIMIT for e in folded)
    # Nothing is lost from the count: every junk line is an event or in a fold.
    assert sum(e.get("repeat", 1) for e in commands if e.verb == "") == FLOOD
    assert commands[-1].text == "QUIT" and "repeat" not in commands[-1]
    assert len(commands) - len(folded) < ERROR_EVENTS_FREE + sent // 256 + 2
    # The byte offsets still tile the stream in both directions.
    for kind in ("recv", "send"):
        raw = [e for e in events if e.type == kind and e.channel == "control"]
        assert all(a.offset + a.len == b.offset for a, b in zip(raw, raw[1:]))
    replies = [e for e in events if e.type == "reply"]
    assert sum(e.get("repeat", 1) for e in replies if e.code == 500) == FLOOD
    assert replies[-1].code == 221


def test_a_normal_session_folds_nothing(tmp_path):
    """Fewer error lines than the free budget: each is its own event, as before."""
    log = tmp_path / "few.log"
    with socket.create_server(("127.0.0.1", 0)) as listener, \
            socket.create_connection(listener.getsockname()) as client_side:
        server_side, _ = listener.accept()
        tracer = trace.Tracer(log, "server")
        traced = trace.TracedSocket(server_side, "control", tracer)
        for _ in range(20):
            client_side.sendall(b"\n")
            traced.recv(100)
            traced.sendall(b"500 Unknown command.\r\n")
            client_side.recv(100)
        traced.close()
        tracer.close()
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert not any("repeat" in e for e in events)
    assert sum(e["type"] == "command" for e in events) == 20
    assert sum(e["type"] == "reply" for e in events) == 20
