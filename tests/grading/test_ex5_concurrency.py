"""Exercise 5: concurrency. A thread per client, so one slow client does not
stop the others, a limit on how many, and counters that every session
thread updates under one lock."""

from __future__ import annotations

import pytest

from tests.grading.harness import GradingFailure, expect, expect_equal

ex5 = pytest.mark.ex5


def points(n):
    return pytest.mark.points(n)


@ex5
@points(4)
@pytest.mark.timeout(10)
def test_stats_add_holds_the_lock(code, steps):
    """ServerStats.add changes the counters only while holding stats.lock"""
    session = code.module("session")
    steps.note("stats.add(transfers=1, bytes_sent=100), watching every counter change")
    seen = code.probe("stats_lock", session)
    expect_equal(tuple(seen["counters"]), (1, 100), "the counters after add(transfers=1, bytes_sent=100)")
    expect(not seen["unlocked"], "every counter changes while stats.lock is held",
           "no change outside 'with self.lock:'", f"{seen['unlocked']} changed without the lock",
           "a shared counter without a lock: two session threads can read the same old value and one "
           "update is lost; take self.lock around the read-modify-write")


@ex5
@points(2)
@pytest.mark.timeout(20)
def test_stats_add_from_many_threads(code, steps):
    """Eight threads adding at once lose no update"""
    session = code.module("session")
    per_thread, threads = 50, 8
    steps.note(f"{threads} threads each call stats.add(transfers=1, bytes_sent=2) {per_thread} times; "
               "each read of a counter pauses 0.1 ms, so the threads interleave there")
    counters = code.probe("stats_threads", session, threads, per_thread)
    expect_equal(tuple(counters), (threads * per_thread, 2 * threads * per_thread),
                 "the counters after all threads finished", "updates were lost: hold self.lock in add()")


@ex5
@points(5)
def test_server_serves_clients_concurrently(files, student_server, probe, steps):
    """Three clients connected at once are all served (a thread per client)"""
    server = student_server(files[0])
    clients = [probe(server.address, f"client {n}") for n in (1, 2, 3)]
    for n, client in enumerate(clients, 1):
        try:
            client.reply(f"the greeting of client {n} while clients 1-3 are all connected")
        except GradingFailure as failure:
            failure.hint = ("the server did not greet this client while the others were connected: serve each "
                            "client in its own thread so one client does not block the rest")
            raise GradingFailure(failure.what, failure.expected, failure.actual, failure.hint) from None
    for client in reversed(clients):
        client.command("USER anonymous", 331)
    for client in clients:
        client.command("PASS x", 230)
        client.command("NOOP", 200)
    trace = server.trace()
    expect_equal(len(trace.of("control", "accept")), 3, "three control connections accepted")


@ex5
@points(4)
def test_server_refuses_clients_beyond_the_limit(files, student_server, probe, steps):
    """With --max-clients 1, a second client gets 421 at once; after the first leaves, a new one is served"""
    server = student_server(files[0], "--max-clients", "1")
    first = probe(server.address, "client 1")
    first.reply("the greeting of client 1")
    second = probe(server.address, "client 2")
    reply = second.reply("the reply to client 2 while client 1 is connected (limit 1)")
    expect_equal(reply.code, 421, "the reply to a client beyond the limit",
                 "count open sessions (under the lock) and refuse with 421 when full")
    first.command("QUIT", 221)
    import time
    deadline = time.monotonic() + 3
    while True:
        third = probe(server.address, "client 3")
        reply = third.reply("the greeting of client 3 after client 1 quit")
        if reply.code == 220 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    expect_equal(reply.code, 220, "a client is served again once client 1 has left",
                 "decrement the count of open sessions when a session ends")
