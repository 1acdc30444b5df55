"""How the session model matches the client's and the server's records of one
transfer, counts them, and names those that never ended.

The events are fed to :class:`trace.model.Session` one by one, as a reader
would, so these tests hold whatever module does the bookkeeping.
"""

from __future__ import annotations

from trace.model import KEEP_TRANSFERS, Session

PID = {"client": 4001, "server": 4002}


def event(role: str, t: float, type: str, **fields) -> dict:
    return {"type": type, "t": t, "seq": 0, "role": role, "pid": PID[role], **fields}


def start(role: str, t: float, path: str, command: str = "RETR") -> dict:
    return event(role, t, "transfer_start", command=command, path=path, direction="download",
                 conn=None, control=1)


def end(role: str, t: float, path: str, command: str = "RETR", verdict: str = "ok") -> dict:
    return event(role, t, "transfer_end", command=command, path=path, direction="download",
                 conn=None, control=1, bytes=10, duration=0.5, sha256=None, verdict=verdict)


def fed(*events) -> Session:
    session = Session()
    for one in events:
        session.feed(one)
    session.finish()
    return session


def test_the_two_sides_of_one_transfer_make_one_record():
    # The client names the file as typed, the server in full; no data connection is named.
    session = fed(start("client", 1.0, "a.bin"), start("server", 1.1, "/a.bin"),
                  end("server", 2.0, "/a.bin"), end("client", 2.1, "a.bin", verdict="verified"))
    (transfer,) = session.transfers
    assert session.transfer_count == 1
    assert transfer.path == "/a.bin"                 # the server's name wins
    assert transfer.t_start == 1.0                   # the earlier of the two starts
    assert sorted(transfer.sides) == ["client", "server"]
    assert transfer.verdict == "verified"


def test_a_transfer_that_never_ended_is_unfinished_after_the_input_ends():
    session = fed(start("client", 1.0, "a.bin"))
    (transfer,) = session.transfers
    assert (transfer.command, transfer.path, transfer.t_start) == ("RETR", "a.bin", 1.0)
    assert transfer.verdict == "unfinished" and transfer.bytes == 0
    assert session.transfer_count == 1


def test_a_side_that_logged_no_end_did_not_leave_a_transfer_the_other_side_ended():
    session = fed(start("client", 1.0, "a.bin"), start("server", 1.2, "/a.bin"),
                  end("server", 2.0, "/a.bin"))
    (transfer,) = session.transfers
    assert list(transfer.sides) == ["server"] and transfer.verdict == "ok"


def test_past_the_kept_records_transfers_are_only_counted():
    total = KEEP_TRANSFERS + 5
    events = []
    for n in range(total):
        t = float(n)
        events += [start("client", t, f"f{n}"), start("server", t, f"/f{n}"),
                   end("server", t + 0.5, f"/f{n}"), end("client", t + 0.6, f"f{n}")]
    session = fed(*events)
    assert session.transfer_count == total
    assert len(session.transfers) == KEEP_TRANSFERS
    assert session.transfers[-1].path == f"/f{KEEP_TRANSFERS - 1}"
    assert all(len(transfer.sides) == 2 for transfer in session.transfers)
