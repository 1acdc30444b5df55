"""Limits and timeouts: nothing a client does (or fails to do) holds the
server or its other clients hostage.

Overlong lines, idle connections, passive ports nobody connects to, data
connections that stall, too many clients, and a client that sends half a
line and stops.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from solutions.server import parse_args
from solutions.session import ServerConfig
from test_security import Control, receive_all, start_server  # noqa: F401 (a fixture)

MAX_LINE = 2048


# --- long lines --------------------------------------------------------------

@pytest.mark.parametrize("length", [MAX_LINE + 1, 5000, 1024 * 1024])
def test_an_overlong_line_gets_500_and_the_session_goes_on(start_server, length):
    connection = Control(start_server().address).login()
    try:
        assert connection.ask(b"STOR " + b"x" * (length - 5))[0] == 500
        assert connection.ask("NOOP")[0] == 200
    finally:
        connection.close()


def test_a_line_of_exactly_2048_bytes_is_a_command(start_server):
    connection = Control(start_server().address).login()
    try:
        assert connection.ask(b"NOOP " + b"x" * (MAX_LINE - 5))[0] == 200
    finally:
        connection.close()


def test_overlong_lines_among_good_ones_keep_the_replies_in_step(start_server):
    connection = Control(start_server().address).login()
    try:
        lines = [b"NOOP", b"X" * 10_000, b"PWD", b"Y" * 3000, b"SYST", b"Z" * (MAX_LINE + 1), b"NOOP"]
        connection.send(b"".join(line + b"\r\n" for line in lines))      # all at once
        codes = [connection.reply()[0] for _ in lines]
        assert codes == [200, 500, 257, 500, 215, 500, 200]
    finally:
        connection.close()


# --- idle clients ------------------------------------------------------------

def test_the_defaults_are_those_of_the_issue():
    args = parse_args(["0"])
    assert (args.idle_timeout, args.accept_timeout, args.transfer_timeout) == (300, 30, 60)
    config = ServerConfig(root=None)
    assert (config.idle_timeout, config.accept_timeout, config.transfer_timeout) == (300, 30, 60)


def test_an_idle_control_connection_times_out(server_process, server_root):
    server = server_process(server_root, "--idle-timeout", "0.5")
    connection = Control((server.host, server.port))
    try:
        connection.login()
        started = time.monotonic()
        assert connection.reply()[0] == 421          # unasked: the server says goodbye
        assert 0.4 <= time.monotonic() - started < 5
        assert connection.is_closed()
    finally:
        connection.close()


def test_half_a_line_and_silence_slow_nobody_else(start_server, server_root):
    (server_root / "f.txt").write_text("hello")
    server = start_server()
    stalled = [socket.create_connection(server.address, timeout=5) for _ in range(20)]
    try:
        for sock in stalled:
            sock.sendall(b"USER anon")               # no line end, ever
        started = time.monotonic()
        connection = Control(server.address).login()
        port = connection.pasv()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as data:
            assert connection.ask("RETR f.txt")[0] == 150
            assert receive_all(data) == b"hello"
        assert connection.reply()[0] == 226
        connection.close()
        assert time.monotonic() - started < 1.0
    finally:
        for sock in stalled:
            sock.close()


def test_the_idle_timeout_ends_a_half_line_too(start_server):
    server = start_server(idle_timeout=0.3)
    sock = socket.create_connection(server.address, timeout=5)
    try:
        assert sock.recv(100).startswith(b"220")
        sock.sendall(b"USER anon")
        started = time.monotonic()
        assert sock.recv(100).startswith(b"421")
        assert sock.recv(100) == b""
        assert time.monotonic() - started < 3
    finally:
        sock.close()


# --- data connections ----------------------------------------------------------

def test_a_passive_port_nobody_connects_to_times_out(start_server, server_root):
    (server_root / "f.txt").write_text("hello")
    connection = Control(start_server(accept_timeout=0.5).address).login()
    try:
        port = connection.pasv()
        started = time.monotonic()
        assert connection.ask("RETR f.txt")[0] == 425
        assert 0.4 <= time.monotonic() - started < 3
        # The listener is gone: the port no longer answers.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert connection.ask("NOOP")[0] == 200
    finally:
        connection.close()


def test_a_download_nobody_reads_times_out(start_server, server_root):
    with open(server_root / "big.bin", "wb") as file:
        file.truncate(256 * 1024 * 1024)     # sparse: far more than the socket buffers hold
    connection = Control(start_server(transfer_timeout=0.5).address).login()
    try:
        port = connection.pasv()
        with socket.create_connection(("127.0.0.1", port), timeout=5):   # and never read
            assert connection.ask("RETR big.bin")[0] == 150
            started = time.monotonic()
            code, text = connection.reply()
            assert code == 426 and "timed out" in text
            assert time.monotonic() - started < 5
        assert connection.ask("NOOP")[0] == 200
    finally:
        connection.close()


def test_an_upload_that_stalls_times_out_and_leaves_nothing(start_server, server_root):
    connection = Control(start_server(transfer_timeout=0.5).address).login()
    try:
        port = connection.pasv()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as data:
            assert connection.ask("STOR stalled.bin")[0] == 150
            data.sendall(b"x" * 100_000)         # then nothing, and no close
            code, text = connection.reply()
            assert code == 426 and "timed out" in text
        assert list(server_root.iterdir()) == []
    finally:
        connection.close()


# --- how many clients ------------------------------------------------------------

def test_when_full_the_next_client_gets_421(server_process, server_root):
    server = server_process(server_root, "--max-clients", "2")
    address = (server.host, server.port)
    first, second = Control(address), Control(address)
    try:
        assert first.greeting[0] == second.greeting[0] == 220
        refused = Control(address)
        assert refused.greeting[0] == 421
        assert refused.is_closed()
        refused.close()
        first.ask("QUIT")
        first.close()
        # Once a session has ended, its place is free again.
        deadline = time.monotonic() + 5
        while True:
            third = Control(address)
            if third.greeting[0] == 220 or time.monotonic() > deadline:
                break
            third.close()
            time.sleep(0.05)
        assert third.greeting[0] == 220
        third.close()
    finally:
        second.close()


def test_a_client_that_reads_no_replies_blocks_only_itself(start_server):
    server = start_server(idle_timeout=2)
    flooder = socket.create_connection(server.address, timeout=5)
    try:
        flooder.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        done = threading.Event()

        def flood():
            try:
                while not done.is_set():
                    flooder.sendall(b"NOOP\r\n" * 1000)     # replies pile up unread
            except OSError:
                pass

        threading.Thread(target=flood, daemon=True).start()
        time.sleep(0.3)
        started = time.monotonic()
        other = Control(server.address).login()
        assert other.ask("NOOP")[0] == 200
        other.close()
        assert time.monotonic() - started < 1.0
        done.set()
    finally:
        flooder.close()
