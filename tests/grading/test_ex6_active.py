"""Exercise 6 (extra credit): active mode. The client listens and announces
its port with PORT or EPRT; the server connects back, but only to the
client's own address (no bounce attacks)."""

from __future__ import annotations

import socket

import pytest

from tests.grading.harness import IO_TIMEOUT, GradingFailure, Trace, expect, expect_equal, expect_same_bytes
from tests.grading.peers import client_kinds
from tests.grading.remote import StudentError

ex6 = pytest.mark.ex6


def points(n):
    return pytest.mark.points(n)


@ex6
@points(2)
@pytest.mark.timeout(10)
def test_parse_eprt_arg(code, steps):
    """parse_eprt_arg reads |family|address|port| with any delimiter"""
    protocol = code.module("protocol")
    for text, expected in [("|1|127.0.0.1|5282|", ("127.0.0.1", 5282)), ("!2!::1!6000!", ("::1", 6000)),
                           ("|1|10.0.0.7|65535|", ("10.0.0.7", 65535))]:
        steps.note(f"parse_eprt_arg({text!r})")
        expect_equal(protocol.parse_eprt_arg(text), expected, f"parse_eprt_arg({text!r})",
                     "the first character is the delimiter (RFC 2428)")
    for bad in ["|1|127.0.0.1|", "|2|127.0.0.1|5282|", "|1|::1|5282|", "|1|127.0.0.1|0|", "|1|127.0.0.1|port|", ""]:
        steps.note(f"parse_eprt_arg({bad!r})")
        try:
            result = protocol.parse_eprt_arg(bad)
        except ValueError:
            continue
        raise GradingFailure(f"parse_eprt_arg({bad!r}) refuses a malformed argument", "ValueError", repr(result))
    try:
        protocol.parse_eprt_arg("|3|127.0.0.1|5282|")
    except ValueError as err:
        if not (isinstance(err, StudentError) and err.is_a("UnsupportedFamily")):
            raise GradingFailure("family 3 raises UnsupportedFamily (the server answers 522)",
                                 "UnsupportedFamily", type(err).__name__) from None
    else:
        raise GradingFailure("family 3 is refused", "UnsupportedFamily", "accepted")


@ex6
@points(4)
@pytest.mark.parametrize("kind", client_kinds())
def test_server_active_mode(kind, files, student_server, ftp_client, probe):
    """PORT and EPRT: the server connects back and the transfer works; bad arguments get 501/522"""
    root, content = files
    server = student_server(root)
    client = ftp_client(kind, server.address, passive=False)
    expect_same_bytes(client.get("binary.bin"), content["binary.bin"], "RETR binary.bin in active mode (PORT)")
    client.quit()
    control = probe(server.address)
    control.login()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(IO_TIMEOUT)
    try:
        port = listener.getsockname()[1]
        control.command(f"EPRT |1|127.0.0.1|{port}|", 200)
        control.command("RETR notes.txt", 150)
        try:
            data, _ = listener.accept()
        except socket.timeout:
            raise GradingFailure("after EPRT and RETR the server connects to the announced port",
                                 f"a connection to port {port}", "none within 3 s") from None
        with data:
            data.settimeout(IO_TIMEOUT)
            received = b""
            while chunk := data.recv(65536):
                received += chunk
        expect_same_bytes(received, content["notes.txt"], "RETR notes.txt after EPRT")
        control.reply("the 226 after the active transfer")
    finally:
        listener.close()
    control.command("PORT 1,2,3", 501, "PORT with a malformed argument")
    control.command("PORT 127,0,0,1,300,1", 501, "PORT with a number over 255")
    control.command("EPRT |3|127.0.0.1|5000|", 522, "EPRT with an unknown network protocol")
    control.command("EPRT garbage", 501, "a malformed EPRT")
    control.command("NOOP", 200)


@ex6
@points(4)
def test_client_active_mode(files, workdir, reference_server, student_client, client_trace, steps):
    """FtpClient(passive=False) listens, announces the port with PORT, accepts the server's connection"""
    root, content = files
    server = reference_server(root)
    client = student_client(server.address, passive=False)
    local = workdir / "active.bin"
    steps.note("client.get('binary.bin', 'active.bin') with passive=False")
    client.get("binary.bin", str(local))
    expect_same_bytes(local.read_bytes(), content["binary.bin"], "the file downloaded in active mode")
    local.write_bytes(content["notes.txt"])
    steps.note("client.put('active.bin', 'up.txt') with passive=False")
    client.put(str(local), "up.txt")
    expect_same_bytes((root / "up.txt").read_bytes(), content["notes.txt"], "the file uploaded in active mode")
    trace = Trace.load(client_trace)
    listeners = trace.of("data", "listen")
    expect_equal(len(listeners), 2, "the client listened once per transfer (data listeners in its trace)")
    expect(all(l.closed is not None for l in listeners), "each of the client's listeners is closed",
           "closed", "left open")
    commands = [verb for _, verb, _ in trace.commands_sent()]
    expect("PORT" in commands or "EPRT" in commands, "the client announced its port", "PORT or EPRT", commands)
