"""Diagnoses of the common hangs, read off the traces of a failing test.

A hang reaches the grader as a timeout: ftplib's, the student's client's
own ("the server did not answer in time"), the driver's, or the test's.
The timeout says nothing about why; the traces usually do:

* a whole reply arrived on the control connection (the tracer saw its
  CRLF) and the student's client still waited: its parser did not return it;
* ``recv`` returned ``b""`` again and again on one connection: a loop that
  does not end at the end of the stream (it burns CPU: we say how much);
* a data connection was still open while the client waited for the 226: the
  226 comes only after the data connection is closed.
"""

from __future__ import annotations

import re

from .harness import Trace, read_events
from .watch import cpu_seconds

_FINAL_LINE = re.compile(r"(?m)^(\d{3}) [^\r\n]*\r?\n")


def looks_like_a_wait(error) -> bool:
    """Whether the failure is a timeout of some kind (the symptom of a hang)."""
    if error is None:
        return False
    text = f"{type(error).__name__} {error}".lower()
    return any(word in text for word in ("timeout", "timed out", "in time", "did not return within",
                                        "still waiting", "not answer",
                                        # the grader's watch calling a hang early (watch.py)
                                        "nothing ran", "never waits for the network"))


def diagnose(traces: list[tuple[str, object]], error, processes: dict[int, str]) -> list[str]:
    """Lines of diagnosis for a failing test; empty when nothing is recognised.

    ``traces``: (label, path) of each trace of the test; ``processes``: pid ->
    label of the submission's processes still running (for their CPU time)."""
    out: list[str] = []
    waited = looks_like_a_wait(error)
    for label, path in traces:
        trace = Trace(read_events(path))
        busy = _busy_eof(label, trace, processes)
        out += busy
        if waited and not busy:          # a loop spinning on b'' explains the wait: no other guess
            out += _reply_not_returned(label, trace)
            out += _data_open_while_waiting(label, trace)
    return out


def _busy_eof(label: str, trace: Trace, processes: dict[int, str]) -> list[str]:
    out = []
    run, first, conn, pid = 0, None, None, None
    worst = (0, None, None, None)
    for index, event in enumerate(trace.events):
        if event.get("type") != "recv":
            continue
        if event.get("len", 1) == 0 and event.get("conn") == conn:
            run += 1
        elif event.get("len", 1) == 0:
            run, first, conn, pid = 1, index, event.get("conn"), event.get("pid")
        else:
            run, conn = 0, None
        if run > worst[0]:
            worst = (run, first, conn, pid)
    count, first, conn, pid = worst
    if count >= 3:
        channel = trace.events[first].get("channel", "")
        line = (f"Diagnosis ({label}): recv returned b'' {count} times in a row (at least) on {channel} #{conn} "
                f"(from step {trace.step(first)}): b'' means the peer closed the connection and nothing more will "
                f"come, but the loop kept reading. End the loop when recv returns b'' (recv_into returns 0).")
        for process_pid, name in processes.items():
            if pid in (process_pid, None):
                line += f" {name} (pid {process_pid}) has used {cpu_seconds(process_pid):.1f} s of CPU: a loop that never waits."
        out.append(line)
    return out


def _reply_not_returned(label: str, trace: Trace) -> list[str]:
    """The last thing on the client's control connection is a whole reply received."""
    control = [(i, e) for i, e in enumerate(trace.events) if e.get("channel") == "control"
               and e.get("type") in ("send", "recv") and e.get("len", 0) > 0]
    if not control or "client" not in label:
        return []
    index, last = control[-1]
    text = last.get("text", "")
    if last.get("type") != "recv" or not isinstance(text, str) or not _FINAL_LINE.search(text):
        return []
    return [f"Diagnosis ({label}): step {trace.step(index)} received the whole reply {text!r} (its CRLF "
            "included), and the client went on waiting instead of returning it: the reply parser did not "
            "recognise a complete reply (check how ReplyParser.next_event tells a last line, CODE and a space, "
            "from a first line of several, CODE and a hyphen)."]


def _data_open_while_waiting(label: str, trace: Trace) -> list[str]:
    """A data connection of the client still open, no 226 received after its transfer command."""
    if "client" not in label:
        return []
    open_data = [c for c in trace.of("data") if c.how in ("connect", "accept") and c.closed is None]
    if not open_data:
        return []
    replies = trace.replies_received()
    if replies and replies[-1][1] == 226:
        return []
    conn = open_data[-1]
    return [f"Diagnosis ({label}): data #{conn.conn} (opened at step {trace.step(conn.opened)}) was still open "
            "while the client waited for the 226. The server replies 226 only once the data connection is "
            "closed: close it (after sending the file, for put) before reading the final reply."]
