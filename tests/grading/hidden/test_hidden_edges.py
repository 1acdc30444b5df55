"""Graded tests that students do not see before grades are published
(Gradescope visibility "after_published"; left out of the student release)."""

from __future__ import annotations

import pytest

from tests.grading.harness import expect_equal
from tests.grading.peers import client_kinds

hidden = pytest.mark.hidden


@hidden
@pytest.mark.ex1
@pytest.mark.points(1)
def test_server_survives_an_overlong_command_line(files, student_server, probe):
    """A 10000-byte command line gets 500 and the session goes on"""
    server = student_server(files[0])
    control = probe(server.address)
    control.login()
    control.send(b"NOOP " + b"x" * 10_000 + b"\r\n")
    expect_equal(control.reply("the reply to a 10005-byte command line").code, 500,
                 "the reply to an overlong command line", "lines over MAX_LINE are refused with 500, not buffered")
    control.command("NOOP", 200, "the session goes on after the overlong line")


@hidden
@pytest.mark.ex3
@pytest.mark.points(1)
@pytest.mark.parametrize("kind", client_kinds())
def test_server_moves_empty_files(kind, files, student_server, ftp_client):
    """An empty file goes up and comes back down: zero bytes, then the data connection closes"""
    root, _ = files
    server = student_server(root)
    client = ftp_client(kind, server.address)
    client.put("empty.bin", b"")
    expect_equal((root / "empty.bin").read_bytes(), b"", "the stored empty.bin")
    expect_equal(client.get("empty.bin"), b"", "the downloaded empty.bin")
    client.quit()
