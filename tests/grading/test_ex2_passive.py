"""Exercise 2: the passive data channel. The server listens on a fresh
ephemeral port, announces it (227 or 229), accepts exactly one connection
and stops listening; the client connects to the announced port."""

from __future__ import annotations

import socket

import pytest

from trace.announce import parse_announcement

from tests.grading.harness import IO_TIMEOUT, GradingFailure, Trace, expect, expect_equal
from tests.grading.peers import data_connect, parse_227

ex2 = pytest.mark.ex2


def points(n):
    return pytest.mark.points(n)


@ex2
@points(3)
@pytest.mark.timeout(10)
def test_host_port_format(code, steps):
    """format_host_port and parse_host_port: h1,h2,h3,h4,p1,p2 with port = p1*256 + p2"""
    protocol = code.module("protocol")
    for host, port, text in [("127.0.0.1", 49153, "127,0,0,1,192,1"), ("10.1.2.3", 21, "10,1,2,3,0,21"),
                             ("192.168.0.9", 65535, "192,168,0,9,255,255")]:
        steps.note(f"format_host_port({host!r}, {port})")
        expect_equal(protocol.format_host_port(host, port), text, f"format_host_port({host!r}, {port})",
                     "the port's high byte (port // 256) comes first, then the low byte (port % 256)")
        steps.note(f"parse_host_port({text!r})")
        expect_equal(protocol.parse_host_port(text), (host, port), f"parse_host_port({text!r})",
                     "port = p1 * 256 + p2")
    for bad in ["127,0,0,1,192", "127,0,0,1,256,1", "a,b,c,d,e,f", ""]:
        steps.note(f"parse_host_port({bad!r})")
        try:
            result = protocol.parse_host_port(bad)
        except ValueError:
            continue
        raise GradingFailure(f"parse_host_port({bad!r}) refuses a malformed address", "ValueError", repr(result))


@ex2
@points(3)
@pytest.mark.timeout(10)
def test_listening_end_accepts_once_then_stops_listening(code, local_trace, steps):
    """ListeningEnd.open accepts one connection and closes its listener"""
    datachannel = code.module("datachannel")
    end = datachannel.ListeningEnd("127.0.0.1", accept_timeout=IO_TIMEOUT, transfer_timeout=IO_TIMEOUT)
    host, port = end.address
    steps.note(f"ListeningEnd('127.0.0.1') listens on {host}:{port}; the grader connects, then calls open()")
    peer = data_connect((host, port), "connect to the ListeningEnd's port")
    try:
        sock = end.open()
        expect(sock is not None, "open() returns the accepted connection", "a socket", repr(sock))
        sock.sendall(b"hello")
        expect_equal(peer.recv(16), b"hello", "bytes sent on the accepted socket reach the peer")
        expect(sock.gettimeout() == IO_TIMEOUT, "the data connection has the transfer timeout",
               f"{IO_TIMEOUT} s", f"{sock.gettimeout()}", "a stalled transfer must fail, not hang: settimeout")
        steps.note(f"the grader connects to port {port} a second time")
        try:
            second = socket.create_connection((host, port), timeout=1)
        except OSError:
            second = None
        if second is not None:
            second.close()
            raise GradingFailure("after its one accept, the listener stops listening",
                                 f"a second connection to port {port} refused",
                                 "the kernel accepted it: the listening socket is still open",
                                 "close the listener in open() once it has accepted (one listener, one connection)")
        trace = Trace.load(local_trace)
        listeners = trace.of("data", "listen")
        expect(listeners and listeners[0].closed is not None, "the trace shows the listener closed",
               "a close of the data listener", "none")
        sock.close()
    finally:
        peer.close()
        end.close()


@ex2
@points(2)
@pytest.mark.timeout(10)
def test_listening_end_ignores_other_peers(code, steps):
    """A ListeningEnd with allowed_peer closes connections from other addresses (port stealing)"""
    datachannel = code.module("datachannel")
    end = datachannel.ListeningEnd("127.0.0.1", accept_timeout=IO_TIMEOUT, transfer_timeout=IO_TIMEOUT,
                                   allowed_peer="127.0.0.1")
    host, port = end.address
    thief = socket.socket()
    try:
        try:
            thief.bind(("127.0.0.2", 0))
        except OSError:
            pytest.skip("this machine has no 127.0.0.2")   # never on Linux
        thief.settimeout(IO_TIMEOUT)
        thief.connect((host, port))
        steps.note(f"a connection from 127.0.0.2 first, then one from 127.0.0.1, to port {port}")
        client = data_connect((host, port), "connect from 127.0.0.1")
        sock = end.open()
        expect_equal(sock.getpeername()[0], "127.0.0.1", "open() returns the connection from the allowed peer",
                     "compare each accepted connection's address with allowed_peer; close the others")
        sock.close()
        client.close()
    finally:
        thief.close()
        end.close()


@ex2
@points(2)
@pytest.mark.timeout(10)
def test_connecting_end(code, local_trace, steps):
    """ConnectingEnd.open connects to the announced address, on the data channel"""
    datachannel = code.module("datachannel")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(IO_TIMEOUT)
    try:
        address = listener.getsockname()
        steps.note(f"ConnectingEnd({address}).open()")
        sock = datachannel.ConnectingEnd(address, transfer_timeout=IO_TIMEOUT).open()
        peer, _ = listener.accept()
        sock.sendall(b"data")
        expect_equal(peer.recv(16), b"data", "the connection reaches the announced address")
        connects = Trace.load(local_trace).of("data", "connect")
        expect(len(connects) == 1, "the connection is traced on the data channel",
               "one 'connect' event with channel data", f"{len(connects)}",
               "open it with helper.connect(address, 'data', ...)")
        sock.close()
        peer.close()
    finally:
        listener.close()


@ex2
@points(3)
def test_server_pasv(files, student_server, probe):
    """PASV: 227 announces the server's address and a port that accepts a connection"""
    server = student_server(files[0])
    control = probe(server.address)
    control.login()
    reply = control.command("PASV", 227)
    host, port = parse_227(reply.text)
    expect_equal(host, server.host, "the address in the 227 reply is the control connection's server address")
    expect(1024 <= port <= 65535, "the port is an ephemeral port", "1024-65535", port)
    data = data_connect((host, port), f"connect to the port announced in {reply}")
    data.close()
    listens = server.trace().of("data", "listen")
    ports = [int(c.local.rsplit(":", 1)[1]) for c in listens]
    expect(port in ports, "the announced port is the one the server listens on", f"one of {ports}", port,
           "p1 is the port's high byte and p2 its low byte")


@ex2
@points(2)
def test_server_epsv(files, student_server, probe):
    """EPSV: 229 (|||port|) announces a port that accepts a connection"""
    server = student_server(files[0])
    control = probe(server.address)
    control.login()
    reply = control.command("EPSV", 229)
    announced = parse_announcement("229", reply.text)      # the kit's one parser of announcements
    expect(announced is not None, "the 229 reply has the form (|||port|)", "Entering Extended Passive Mode (|||port|)",
           reply.text)
    data_connect((server.host, announced[1]), f"connect to the port announced in {reply}").close()


@ex2
@points(2)
def test_server_new_pasv_replaces_the_old_listener(files, student_server, probe):
    """A second PASV closes the first listener: one pending data connection at a time"""
    server = student_server(files[0])
    control = probe(server.address)
    control.login()
    _, first = parse_227(control.command("PASV", 227).text)
    _, second = parse_227(control.command("PASV", 227).text)
    expect(first != second, "a new PASV listens on a new port", "two different ports", (first, second))
    try:
        socket.create_connection((server.host, first), timeout=1).close()
    except OSError:
        return
    raise GradingFailure("the first PASV's port no longer accepts connections",
                         f"port {first} refused", "a connection was accepted", "")


@ex2
@points(3)
def test_client_opens_a_passive_data_connection(files, reference_server, student_client, steps):
    """FtpClient.prepare_data_channel sends PASV and returns an end that connects to the announced port"""
    server = reference_server(files[0])
    client = student_client(server.address)
    steps.note("end = client.prepare_data_channel(); end.open()")
    end = client.prepare_data_channel()
    sock = end.open()
    try:
        peer = sock.getpeername()
        expect_equal(peer[0], server.host, "the data connection goes to the server's host")
        expect(peer[1] != server.port, "the data connection goes to the announced port, not the control port",
               "another port", peer[1])
    finally:
        sock.close()
        end.close()
    steps.note("client.command('NOOP')")
    expect_equal(client.command("NOOP").code, 200, "the control connection still works")
