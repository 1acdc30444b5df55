"""Exercise 1: the control channel. Lines cut from a byte stream, commands
parsed, replies formatted and parsed, and a server that answers each
command whatever way its bytes arrive."""

from __future__ import annotations

import ftplib
import time

import pytest

from tests.grading.harness import IO_TIMEOUT, GradingFailure, expect, expect_equal
from tests.grading.remote import is_a

ex1 = pytest.mark.ex1


def points(n):
    return pytest.mark.points(n)


# --- the sans-IO core, in this process ----------------------------------------

@ex1
@points(3)
@pytest.mark.timeout(10)
def test_framer_handles_partial_and_pipelined_lines(code, steps):
    """LineFramer returns whole lines, however the bytes arrive"""
    protocol = code.module("protocol")
    framer = protocol.LineFramer()
    for byte in b"USER anonymous\r":
        steps.note(f"framer.feed({bytes([byte])!r})")
        framer.feed(bytes([byte]))
        line = framer.next_line()
        expect(line is None, "no line before its LF has arrived", "None", repr(line),
               "TCP is a byte stream: one recv may return part of a line; keep it until the LF arrives")
    framer.feed(b"\nNOOP\r\nPWD\n")
    steps.note("framer.feed(b'\\nNOOP\\r\\nPWD\\n')")
    got = [framer.next_line(), framer.next_line(), framer.next_line(), framer.next_line()]
    expect_equal(got, [b"USER anonymous", b"NOOP", b"PWD", None],
                 "next_line() returns each complete line without its line end, then None",
                 "one recv may also return several lines: return them one at a time")


@ex1
@points(1)
@pytest.mark.timeout(10)
def test_framer_refuses_overlong_lines(code, steps):
    """A line longer than max_line is reported, not buffered without limit"""
    protocol = code.module("protocol")
    framer = protocol.LineFramer(max_line=100)
    # The rule: LineTooLong is reported once per overlong line, either as soon
    # as more than max_line bytes are buffered without an LF, or when its LF
    # arrives; either way the rest of that line is discarded and the next line
    # is read normally. Both moments are accepted here.
    rule = ("report LineTooLong once, as soon as more than max_line bytes wait without an LF or when the LF "
            "arrives; discard the rest of that line; read the next line normally")
    steps.note("framer = LineFramer(max_line=100); framer.feed(b'X' * 500); framer.next_line()")
    framer.feed(b"X" * 500)
    early = framer.next_line()
    expect(early is None or is_a(early, "LineTooLong"),
           "next_line() before the LF of a 500-byte line (max_line=100)", "None or LineTooLong(...)",
           repr(early), rule)
    steps.note("framer.feed(b'\\r\\nNOOP\\r\\n'); framer.next_line(), ...")
    framer.feed(b"\r\nNOOP\r\n")
    rest = []
    for _ in range(3):
        line = framer.next_line()
        if line is None:
            break
        rest.append(line)
    reported = ([early] if early is not None else []) + [line for line in rest if is_a(line, "LineTooLong")]
    expect(len(reported) == 1, "the 500-byte line is reported as LineTooLong exactly once",
           "one LineTooLong", f"{len(reported)}: next_line() gave {early!r} before the LF, then {rest!r}", rule)
    others = [line for line in rest if not is_a(line, "LineTooLong")]
    expect_equal(others, [b"NOOP"], "the line after the overlong one is read normally", rule)


@ex1
@points(2)
@pytest.mark.timeout(10)
def test_parse_command(code, steps):
    """parse_command splits verb and argument; the verb is case-insensitive"""
    protocol = code.module("protocol")
    cases = {
        "RETR a.bin": protocol.Command("RETR", "a.bin"),
        "retr my file.txt": protocol.Command("RETR", "my file.txt"),
        "NOOP": protocol.Command("NOOP", ""),
        "pwd": protocol.Command("PWD", ""),
    }
    for line, expected in cases.items():
        steps.note(f"parse_command({line!r})")
        expect_equal(protocol.parse_command(line), expected, f"parse_command({line!r})",
                     "the argument is everything after the first space, kept as it is")
    for line in ["", "  ", "12 3", "TOOLONGVERB x"]:
        steps.note(f"parse_command({line!r})")
        result = protocol.parse_command(line)
        expect(is_a(result, "MalformedLine"), f"parse_command({line!r}) is malformed",
               "MalformedLine(...)", repr(result), "a verb is 3 or 4 letters")


@ex1
@points(2)
@pytest.mark.timeout(10)
def test_format_reply(code, steps):
    """format_reply ends every line with CRLF; multi-line replies use CODE- ... CODE"""
    protocol = code.module("protocol")
    expect_equal(protocol.format_reply(200, "NOOP ok."), b"200 NOOP ok.\r\n", "format_reply(200, 'NOOP ok.')",
                 "a reply line is CODE, a space, the text, then CR LF (RFC 959 section 4.2)")
    expect_equal(protocol.format_reply(211, "Features:\n EPSV\nEnd"),
                 b"211-Features:\r\n EPSV\r\n211 End\r\n", "a multi-line reply")
    expect_equal(protocol.format_reply(214, "Help:\n123 is a number\nEnd"),
                 b"214-Help:\r\n 123 is a number\r\n214 End\r\n",
                 "a middle line that starts with a digit is indented by a space")


@ex1
@points(2)
@pytest.mark.timeout(10)
def test_reply_parser(code, steps):
    """ReplyParser assembles single and multi-line replies from any chunks"""
    protocol = code.module("protocol")
    parser = protocol.ReplyParser()
    stream = b"220 Ready.\r\n211-Features:\r\n EPSV\r\n211 End\r\n226 Done.\r\n"
    events = []
    for byte in stream:
        parser.receive_data(bytes([byte]))
        while True:
            event = parser.next_event()
            if is_a(event, "_NeedData"):
                break
            events.append(event)
    steps.note(f"fed {stream!r} one byte at a time")
    expect_equal([(e.code, e.text) for e in events if is_a(e, "Reply")],
                 [(220, "Ready."), (211, "Features:\n EPSV\nEnd"), (226, "Done.")],
                 "three replies, the multi-line one joined by newlines")


@ex1
@points(2)
@pytest.mark.timeout(10)
def test_send_reply_and_receive_event_on_a_socket(code, steps):
    """send_reply sends the whole reply; receive_event reads until an event is complete"""
    import socket
    helper, protocol = code.module("helper"), code.module("protocol")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(IO_TIMEOUT)
    try:
        # The student's end of the connection lives in the process running their code.
        right = code.connect(listener.getsockname(), timeout=IO_TIMEOUT)
        left, _ = listener.accept()
    finally:
        listener.close()
    left.settimeout(IO_TIMEOUT)
    try:
        steps.note("helper.send_reply(sock, 226, 'Transfer complete.')")
        helper.send_reply(right, 226, "Transfer complete.")
        expect_equal(left.recv(100), b"226 Transfer complete.\r\n", "the bytes send_reply put on the socket")
        parser = protocol.CommandParser()
        left.sendall(b"RE")
        steps.note("sent b'RE', then 50 ms later b'TR a.bin\\r\\nNOOP\\r\\n'")

        def rest():
            time.sleep(0.05)
            left.sendall(b"TR a.bin\r\nNOOP\r\n")
        import threading
        threading.Thread(target=rest, daemon=True).start()
        first = helper.receive_event(right, parser)
        expect_equal(first, protocol.Command("RETR", "a.bin"), "receive_event returns the whole first command",
                     "recv until the parser has a whole line: one recv may return part of it")
        second = helper.receive_event(right, parser)
        expect_equal(second, protocol.Command("NOOP", ""), "the second command, already received, comes next")
        left.close()
        third = helper.receive_event(right, parser)
        expect(is_a(third, "ConnectionClosed"), "after the peer closes: ConnectionClosed",
               "ConnectionClosed()", repr(third), "a recv of b'' means the peer closed")
    finally:
        left.close()


# --- the server under test ------------------------------------------------------

@ex1
@points(2)
def test_server_greets_with_crlf(files, student_server, probe):
    """The server greets with 220 and ends reply lines with CRLF"""
    server = student_server(files[0])
    connection = probe(server.address)
    greeting = connection.reply("the greeting")
    expect_equal(greeting.code, 220, "the greeting's code")
    expect(greeting.raw.endswith(b"\r\n"), "the greeting ends with CR LF", repr(greeting.raw[:-1] + b"\r\n"),
           repr(greeting.raw), "every reply line ends with \\r\\n (RFC 959), not just \\n")
    reply = connection.command("NOOP", 200)
    expect(reply.raw.endswith(b"\r\n"), "the NOOP reply ends with CR LF", "b'200 ...\\r\\n'", repr(reply.raw))


@ex1
@points(2)
def test_server_reads_a_command_split_across_segments(files, student_server, probe):
    """A command that arrives in pieces gets one reply"""
    server = student_server(files[0])
    connection = probe(server.address)
    connection.login()
    connection.send(b"NO")
    time.sleep(0.15)
    connection.send(b"OP\r\n")
    reply = connection.reply("the reply to NOOP sent in two segments, b'NO' and b'OP\\r\\n'")
    expect_equal(str(reply)[:3], "200", "one reply 200 to the whole NOOP",
                 "one recv is not one line: keep the bytes until the CRLF arrives (LineFramer)")
    connection.command("PWD", 257)


@ex1
@points(1)
def test_server_answers_pipelined_commands(files, student_server, probe):
    """Several commands in one segment are answered one by one, in order"""
    server = student_server(files[0])
    connection = probe(server.address)
    connection.reply("the greeting")
    connection.send(b"USER anonymous\r\nPASS guest@\r\nNOOP\r\nPWD\r\n")
    codes = [connection.reply(f"reply {n} of 4 to commands sent in one segment").code for n in range(1, 5)]
    expect_equal(codes, [331, 230, 200, 257], "the replies to USER, PASS, NOOP, PWD sent in one segment",
                 "one recv may carry several lines: answer each of them before reading again")


@ex1
@points(1)
def test_server_with_ftplib(files, student_server, steps):
    """ftplib logs in; an unknown command gets 502 and the session goes on"""
    server = student_server(files[0])
    ftp = ftplib.FTP(timeout=IO_TIMEOUT)
    try:
        steps.note("ftplib: connect, login")
        try:
            ftp.connect(*server.address)
            ftp.login()
        except ftplib.all_errors as err:
            raise GradingFailure("ftplib connects and logs in", "220, 331, 230", f"{type(err).__name__}: {err}")
        steps.note("ftplib: XYZZ")
        try:
            ftp.sendcmd("XYZZ")
            raise GradingFailure("XYZZ is refused", "502", "a success reply")
        except ftplib.error_perm as err:
            expect(str(err).startswith("502"), "the reply to an unknown command", "502 ...", str(err))
        steps.note("ftplib: FEAT")
        features = ftp.sendcmd("FEAT")
        expect(features.startswith("211") and "EPSV" in features, "FEAT lists the features",
               "211-Features ... 211 End", features)
        expect(ftp.quit().startswith("221"), "QUIT", "221", "")
    finally:
        ftp.close()


# --- the client under test --------------------------------------------------------

@ex1
@points(1)
def test_client_reads_replies(files, reference_server, student_client, steps):
    """FtpClient connects, logs in and reads single and multi-line replies"""
    server = reference_server(files[0])
    client = student_client(server.address)
    expect("EPSV" in client.features and "SIZE" in client.features,
           "login() read the multi-line FEAT reply", "features including EPSV and SIZE", client.features)
    steps.note("client.command('NOOP')")
    reply = client.command("NOOP")
    expect_equal(reply.code, 200, "the reply to NOOP")
    steps.note("client.command('PWD')")
    expect_equal(client.command("PWD").code, 257, "the reply to PWD")
