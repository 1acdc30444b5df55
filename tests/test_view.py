"""The viewer's drawing and its figures, on hand-built logs whose every byte
and timestamp the test knows (tests/view_sessions.py).

Each diagram is rendered to a recording console of fixed width and the tests
read the exported text: lanes, arrows, folding and the summary's numbers.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from rich.console import Console

import trace
from trace.diagram import TIME_WIDTH, diagram, summary
from trace.model import Session, build, format_bytes
from tests.view_sessions import (LATENCY, RETR_BYTES, RETR_DURATION, RETR_SIZES,
                                 active_session, passive_session)

WIDTH = 100
GUTTER = TIME_WIDTH + 1          # where the lanes column starts in a row
SNAPSHOTS = Path(__file__).parent / "snapshots"


def render(renderable, width: int = WIDTH) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def rows(text: str) -> list[str]:
    """The diagram's rows (each starts with its time), or a table's lines."""
    lines = text.splitlines()
    timed = [line for line in lines if line[:TIME_WIDTH].strip().replace(".", "").isdigit()]
    return timed or lines


def row_with(text: str, needle: str) -> str:
    found = [row for row in rows(text) if needle in row]
    assert len(found) == 1, f"{needle!r} in {len(found)} rows:\n{text}"
    return found[0]


def lane(row: str, column: int) -> str:
    """The glyph of lane ``column`` in a diagram row."""
    return row[GUTTER + 2 * column]


@pytest.fixture
def passive_log(tmp_path) -> Path:
    path = tmp_path / "session.log"
    passive_session().write(path)
    return path


# --- lanes ----------------------------------------------------------------------------

def test_lanes_open_and_close_where_the_log_says(passive_log):
    text = render(diagram(passive_log))
    lines = rows(text)
    control_open = lines.index(row_with(text, "#1 control: connect"))
    control_close = lines.index(row_with(text, "client closes #1"))
    data_open = lines.index(row_with(text, "#2 data: connect 127.0.0.1:50001 → 127.0.0.1:40001"))
    data_close = lines.index(row_with(text, "client closes #2"))

    assert lane(lines[control_open], 0) == "┬"
    assert lane(lines[control_close], 0) == "┴"
    assert lane(lines[data_open], 1) == "┬"
    assert lane(lines[data_close], 1) == "┴"
    # The control lane spans the session; the data lane only its own rows.
    for line in lines[control_open + 1:control_close]:
        assert lane(line, 0) in "│●┼╎", line
    for line in lines[data_open + 1:data_close]:
        assert lane(line, 1) in "│●┼╎", line
    for line in lines[1:data_open] + lines[data_close + 1:]:
        assert lane(line, 1) == " ", line
    # The server closed first: from then until the client's close, the lane is dotted.
    server_close = lines.index(row_with(text, "server closes #2"))
    assert lane(lines[server_close], 1) == "┼"
    assert server_close < data_close
    # Its time column says when: 0.019 s after the first event.
    assert lines[data_close].startswith(f"{0.0195:{TIME_WIDTH}.6f}")


def test_a_new_data_connection_reuses_the_free_lane(tmp_path):
    from tests.view_sessions import Script
    s = Script()
    listener = s.listen("server", 0.0, "control", "127.0.0.1:2121")
    control = s.connect(0.001, "control", "client", "127.0.0.1:50000", "127.0.0.1:2121",
                        listener)
    for n, t in enumerate((0.010, 0.020)):
        pasv = s.listen("server", t, "data", f"127.0.0.1:4000{n}")
        data = s.connect(t + 0.001, "data", "client", f"127.0.0.1:5100{n}",
                         f"127.0.0.1:4000{n}", pasv)
        data.data("server", t + 0.002, [100], 0.001)
        data.close("server", t + 0.004)
        data.close("client", t + 0.005)
    control.close("client", 0.03)
    control.close("server", 0.031)
    log = tmp_path / "two.log"
    s.write(log)
    text = render(diagram(log))
    assert lane(row_with(text, "#2 data: connect"), 1) == "┬"
    assert lane(row_with(text, "client closes #2"), 1) == "┴"
    # The second data connection opens after the first closed: same column.
    assert lane(row_with(text, "#3 data: connect"), 1) == "┬"
    assert lane(row_with(text, "client closes #3"), 1) == "┴"
    assert lane(row_with(text, "client closes #1"), 0) == "┼"
    assert lane(row_with(text, "server closes #1"), 0) == "┴"


# --- arrows -----------------------------------------------------------------------------

def body(row: str) -> str:
    return row[GUTTER + 2 * 3 + 1:].strip()


def test_arrows_point_from_sender_to_receiver(passive_log):
    text = render(diagram(passive_log))
    command = body(row_with(text, "USER anna"))
    reply = body(row_with(text, "331 Password required"))
    assert command.endswith("▶") and "◀" not in command
    assert reply.startswith("◀") and "▶" not in reply
    assert body(row_with(text, "201.8 KiB @")).startswith("◀")    # RETR: server to client
    assert body(row_with(text, "#2 data: connect")).endswith("▶")   # passive: client connects


def test_active_mode_data_connection_points_from_server_to_client(tmp_path):
    log = tmp_path / "active.log"
    active_session().write(log)
    text = render(diagram(log))
    connect = body(row_with(text, "#2 data: connect 127.0.0.1:2020 → 127.0.0.1:50010"))
    assert connect.startswith("◀")                                   # the server connects
    upload = body(row_with(text, "4.9 KiB @ 0–4999 in 2 segments"))
    assert upload.endswith("▶")                                      # STOR: client to server
    assert "client listens on 127.0.0.1:50010 (data)" in text
    assert "server" in row_with(render(summary(log)), "#2 data")     # opened by the server


def test_error_replies_are_drawn_and_listed(passive_log):
    text = render(diagram(passive_log))
    assert "550 No such file" in text
    table = render(summary(passive_log))
    error_row = row_with(table, "550 No such file")
    assert "RETR missing.bin" in error_row and "#1" in error_row and "server" in error_row


def test_multi_line_reply_stays_on_one_row(tmp_path):
    script = passive_session()
    # The reply events of a multi-line reply carry its lines joined by \n.
    for event in script.events:
        if event["type"] == "reply" and event["code"] == 230:
            event["text"] = "230-Welcome\n 230 lines\n230 Logged in"
    log = tmp_path / "multi.log"
    script.write(log)
    assert "230-Welcome ↵ 230 lines ↵ 230 Logged in" in render(diagram(log))


# --- folding ----------------------------------------------------------------------------

def test_consecutive_data_segments_fold_into_one_row_with_totals(passive_log):
    text = render(diagram(passive_log))
    assert "201.8 KiB @ 0–206607 in 4 segments over 3.0 ms" in text
    assert "64.0 KiB @ 0–65535" not in text


def test_verbose_draws_every_segment(passive_log):
    text = render(diagram(passive_log, verbose=True))
    offset = 0
    for size in RETR_SIZES:
        assert f"{format_bytes(size)} @ {offset}–{offset + size - 1}" in text
        offset += size
    assert "segments over" not in text
    # The receiver cut the stream into other pieces: they are not drawn twice.
    assert "32.0 KiB" not in text


# --- one-sided logs --------------------------------------------------------------------

def test_a_pair_of_one_sided_logs_gives_the_same_picture(tmp_path, passive_log):
    script = passive_session()
    client, server = tmp_path / "client.log", tmp_path / "server.log"
    script.write(client, roles=("client",))
    script.write(server, roles=("server",))
    both = render(diagram(passive_log)) + render(summary(passive_log))
    pair = trace.load(str(client), str(server))
    session, steps = build(pair)
    from trace.diagram import SequenceDiagram
    split = render(SequenceDiagram(steps, session.start)) + render(summary(session))
    assert split == both
    assert "log only" not in both


def test_a_one_sided_log_still_draws_every_message_marked_as_such(tmp_path):
    log = tmp_path / "client.log"
    passive_session().write(log, roles=("client",))
    text = render(diagram(log))
    assert "USER anna (client log only)" in text
    assert "220 ftpkit ready (client log only)" in text
    # Data comes from the receiver's own segments: 7 recvs of 32 KiB and a tail.
    assert "201.8 KiB @ 0–206607 in 7 segments" in text
    assert "(client log only)" in row_with(text, "201.8 KiB @")
    # Its connections are known from one end only, and the summary says so.
    assert row_with(render(summary(log)), "#2 data").rstrip().endswith("client")


def test_a_message_whose_other_copy_never_comes_is_marked(tmp_path):
    script = passive_session()
    # The client never read the 221 (it crashed): only the server's copy exists.
    script.events = [e for e in script.events
                     if not (e["role"] == "client" and e.get("text", "").startswith("221"))]
    log = tmp_path / "crash.log"
    script.write(log)
    text = render(diagram(log))
    assert "221 Bye (server log only)" in text
    assert "QUIT (" not in text


# --- the summary -------------------------------------------------------------------------

def test_summary_figures_come_from_the_log(passive_log):
    session, _ = build(trace.load(passive_log))
    control, data = session.connections
    script = passive_session()
    client_lines = sum(len(e["text"].encode()) for e in script.events
                       if e["type"] == "send" and e["channel"] == "control"
                       and e["role"] == "client")
    assert control.bytes_from("client") == client_lines == 64
    assert data.bytes_from("server") == RETR_BYTES and data.bytes_from("client") == 0
    assert data.connector == "client"
    assert data.lifetime == pytest.approx(0.0195 - 0.013, abs=1e-6)
    assert control.lifetime == pytest.approx(0.033 - 0.002, abs=1e-6)
    (transfer,) = session.transfers
    assert (transfer.command, transfer.path, transfer.bytes) == ("RETR", "a.bin", RETR_BYTES)
    assert transfer.duration == RETR_DURATION
    assert transfer.verdict == "verified"           # both sides hashed, the hashes agree
    assert [(e.code, e.command) for e in session.errors] == [(550, "RETR missing.bin")]

    text = render(summary(session))
    assert "Session of 33.0 ms" in text and "2 connections (1 control, 1 data)" in text
    data_row = row_with(text, "#2 data")
    for figure in ("127.0.0.1:50001", "127.0.0.1:40001", "client", "0.0130", "0.0195",
                   "6.5 ms", "0 B", "201.8 KiB"):
        assert figure in data_row
    transfer_row = row_with(text, "RETR    a.bin")
    rate = RETR_BYTES / RETR_DURATION                # 34.4 MB/s, as MiB/s
    for figure in ("download", "#2", "206,608 B", "6.0 ms", f"{rate / 2**20:.1f} MiB/s",
                   "verified"):
        assert figure in transfer_row


def test_hashes_that_differ_make_a_mismatch(tmp_path):
    script = passive_session()
    for event in script.events:
        if event["type"] == "transfer_end" and event["role"] == "client":
            event["sha256"] = "cd" * 32
    log = tmp_path / "bad.log"
    script.write(log)
    assert "mismatch" in row_with(render(summary(log)), "RETR    a.bin")


def test_summary_fits_an_80_column_terminal(passive_log):
    text = render(summary(passive_log), width=80)
    assert "…" not in text
    assert all(len(line) <= 80 for line in rows(text))


# --- for notebooks ---------------------------------------------------------------------

def test_the_renderables_display_in_a_notebook(passive_log):
    for renderable in (diagram(passive_log), summary(passive_log)):
        bundle = renderable._repr_mimebundle_(include=None, exclude=None)
        assert "text/plain" in bundle or "text/html" in bundle


def test_session_can_be_fed_event_by_event(passive_log):
    session = Session()
    steps = []
    for event in trace.load(passive_log):
        steps += session.feed(event)
    steps += session.finish()
    assert [s.text for s in steps if s.kind == "line"][:2] == ["220 ftpkit ready", "USER anna"]
    # Every line is drawn once, although both sides logged it.
    assert sum(1 for s in steps if s.kind == "line") == 14
    assert all(s.seen == "both" for s in steps if s.kind in ("line", "data"))



def test_each_end_and_listener_knows_the_events_that_opened_and_closed_it(passive_log):
    # The grader names steps by these positions ("the close of data #4"): each
    # must point at its own connect, accept, listen or close event.
    events = list(trace.load(passive_log))
    session, _ = build(events)
    records = session.ends + session.listeners
    assert session.listeners and any(end.how == "accept" for end in session.ends)
    for record in records:
        opening = events[record.opened]
        assert opening["type"] == record.how and opening["conn"] == record.conn, opening
        closes = [index for index, event in enumerate(events) if index > record.opened
                  and event["type"] == "close" and event.get("conn") == record.conn
                  and (event["role"], event["pid"]) == (record.role, record.pid)]
        # The first close after the opening, or None when the log has none (a
        # server's control listener that was still listening at the end).
        assert record.closed == (closes[0] if closes else None), (record.conn, record.how)
    assert sum(record.closed is not None for record in records) >= len(records) - 1


# --- the SVG snapshot ----------------------------------------------------------------------

def test_svg_export_matches_the_snapshot(passive_log):
    console = Console(record=True, width=WIDTH, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", legacy_windows=False)
    console.print(diagram(passive_log))
    console.print(summary(passive_log))
    svg = console.export_svg(title="ftpkit session")
    snapshot = SNAPSHOTS / "view_passive_session.svg"
    if os.environ.get("UPDATE_SNAPSHOTS") or not snapshot.exists():
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(svg, encoding="utf-8")
        pytest.skip("snapshot written; run again to compare")
    assert svg == snapshot.read_text(encoding="utf-8"), (
        "the SVG differs from tests/snapshots/view_passive_session.svg; if the change is "
        "intended, run UPDATE_SNAPSHOTS=1 pytest tests/test_view.py and commit the new file")


def test_latency_in_fixture_is_smaller_than_message_spacing():
    # The hand-built logs assume a receive lands before the next send.
    assert LATENCY < 0.001


# --- races between the two processes ---------------------------------------------------

@pytest.mark.parametrize("mode", ["active", "passive"])
def test_an_accept_logged_after_the_peer_already_sent_and_closed(tmp_path, mode):
    """The connecting side may connect, send, even close, before the other
    side's accept() returns and is logged: the steps wait for it."""
    from tests.view_sessions import Script
    s = Script()
    listener = s.listen("server", 0.0, "control", "127.0.0.1:2121")
    control = s.connect(0.001, "control", "client", "127.0.0.1:50000", "127.0.0.1:2121",
                        listener)
    sender = "server" if mode == "active" else "client"
    data_listener = s.listen("client" if mode == "active" else "server", 0.002, "data",
                             "127.0.0.1:40000")
    data = s.connect(0.003, "data", sender, "127.0.0.1:50001", "127.0.0.1:40000",
                     data_listener)
    data.data(sender, 0.004, [1000, 1000], 0.001)
    data.close(sender, 0.0065)
    receiver = "client" if sender == "server" else "server"
    (accept,) = [e for e in s.events if e["type"] == "accept" and e["channel"] == "data"]
    accept["t"] = round(accept["t"] + 0.005, 6)          # logged after the sender closed
    data.eof(receiver, 0.009)
    data.close(receiver, 0.010)
    control.close("client", 0.02)
    control.close("server", 0.021)
    log = tmp_path / "race.log"
    s.write(log)
    text = render(diagram(log))
    assert "log only" not in text
    segments = body(row_with(text, "2.0 KiB @ 0–1999 in 2 segments"))
    assert segments.endswith("▶") if sender == "client" else segments.startswith("◀")
    assert lane(row_with(text, f"{sender} closes #2"), 1) == "┼"       # not the last end
    assert lane(row_with(text, f"{receiver} closes #2"), 1) == "┴"
