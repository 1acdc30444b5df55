"""Exercise 3: get, put and ls end to end. Every file and every listing on
a data connection of its own, opened for one transfer and closed when it
ends; the control connection stays open across transfers and carries only
commands and replies."""

from __future__ import annotations


import pytest

from tests.grading.harness import GradingFailure, Trace, expect, expect_equal, expect_same_bytes
from tests.grading.peers import client_kinds, data_connect, parse_227, read_to_eof

ex3 = pytest.mark.ex3


def points(n):
    return pytest.mark.points(n)


# --- the server under test, with ftplib and the reference client -------------------

@ex3
@points(3)
@pytest.mark.parametrize("kind", client_kinds())
def test_server_sends_files(kind, files, student_server, ftp_client):
    """RETR: a binary file and a text file arrive byte for byte"""
    root, content = files
    server = student_server(root)
    client = ftp_client(kind, server.address)
    for name in ("binary.bin", "notes.txt"):
        expect_same_bytes(client.get(name), content[name], f"RETR {name}: the bytes received")
    client.noop()
    client.quit()


@ex3
@points(4)
@pytest.mark.parametrize("kind", client_kinds())
def test_server_receives_files(kind, files, student_server, ftp_client):
    """STOR: an uploaded binary file is stored byte for byte"""
    root, content = files
    server = student_server(root)
    client = ftp_client(kind, server.address)
    client.put("up.bin", content["binary.bin"])
    client.put("docs/up.txt", content["notes.txt"])
    expect((root / "up.bin").exists(), "STOR up.bin creates the file in the server's root", "up.bin", "no such file")
    expect_same_bytes((root / "up.bin").read_bytes(), content["binary.bin"], "the stored up.bin")
    expect_same_bytes((root / "docs" / "up.txt").read_bytes(), content["notes.txt"], "the stored docs/up.txt")
    client.quit()


@ex3
@points(3)
@pytest.mark.parametrize("kind", client_kinds())
def test_server_lists_directories(kind, files, student_server, ftp_client):
    """NLST gives the names, LIST one ls -l line per entry"""
    server = student_server(files[0])
    client = ftp_client(kind, server.address)
    names = sorted(name.rsplit("/", 1)[-1] for name in client.names())
    expect_equal(names, ["big.bin", "binary.bin", "docs", "notes.txt"], "NLST of the root")
    lines = client.long_list()
    expect(len(lines) == 4 and all(line.split()[-1] in names for line in lines),
           "LIST: one line per entry, ending with its name", "4 lines like '-rw-r--r-- 1 ftp ftp 300000 ... binary.bin'",
           lines)
    expect_equal(client.names("docs"), ["readme.txt"], "NLST docs")
    client.quit()


@ex3
@points(3)
def test_server_keeps_clients_inside_the_root(files, sandbox, student_server, probe):
    """Paths that lead out of the root are refused with 550"""
    root, _ = files
    (root.parent / "secret.txt").write_bytes(b"outside the root")
    sandbox.give(root.parent)
    server = student_server(root)
    control = probe(server.address)
    control.login()
    for path in ("../secret.txt", "docs/../../secret.txt", "/../secret.txt"):
        host, port = parse_227(control.command("PASV", 227).text)
        data = data_connect((host, port), "connect for the data connection")
        reply = control.command(f"RETR {path}")
        if reply.code < 400:
            leaked = read_to_eof(data, f"RETR {path}")
            raise GradingFailure(f"RETR {path} is refused", "550", f"{reply}, then {len(leaked)} bytes: {leaked[:40]!r}",
                                 "resolve '..' in the virtual path, and refuse it past '/' (Root.resolve)")
        data.close()
        expect_equal(reply.code, 550, f"the reply to RETR {path}")
    control.command("CWD ..", (250, 550))
    expect(control.command("PWD", 257).text.startswith('"/"'), "CWD .. at the root stays at the root",
           '"/"', "")


def _transfer(control, verb: str, arg: str, upload: bytes | None = None) -> bytes:
    """PASV, connect, the command, its 150, the data, its 226 (over the probe)."""
    host, port = parse_227(control.command("PASV", 227, f"PASV before {verb}").text)
    data = data_connect((host, port), f"connect to the port of the PASV before {verb}")
    control.command(f"{verb} {arg}".rstrip(), (125, 150), f"the preliminary reply to {verb}")
    if upload is not None:
        data.sendall(upload)
        data.close()
        received = b""
    else:
        received = read_to_eof(data, f"{verb} {arg}: the data until the server closes the data connection")
        data.close()
        if verb in ("LIST", "NLST"):
            expect(len(received) > 0, f"{verb}: the listing arrives on the data connection",
                   "the listing's lines", "0 bytes: the data connection carried nothing",
                   "the listing travels on the data connection; the control channel carries only replies")
    final = control.reply(f"the final reply to {verb} {arg}")
    expect_equal(final.code, 226, f"the final reply to {verb} {arg}")
    return received


@ex3
@points(5)
def test_server_two_channel_design(files, student_server, probe, steps):
    """Trace: a new data connection per transfer, closed when it ends; no file bytes on the control channel"""
    root, content = files
    server = student_server(root)
    control = probe(server.address)
    control.login()
    plan = [("LIST", "", None), ("RETR", "binary.bin", None), ("STOR", "up.bin", content["notes.txt"]),
            ("NLST", "docs", None), ("RETR", "notes.txt", None)]
    for verb, arg, upload in plan:
        received = _transfer(control, verb, arg, upload)
        if verb == "RETR":
            expect_same_bytes(received, content[arg], f"RETR {arg}: the bytes on the data connection")
    control.command("QUIT", 221)
    trace = Trace.load(server.trace_path).wait_for(
        server.trace_path, lambda t: all(c.closed is not None for c in t.of("control", "accept")))

    # The control connection persists: one for the whole session, open until QUIT.
    controls = trace.of("control", "accept")
    expect_equal(len(controls), 1, "one control connection for the whole session (accepts on the control port)")
    replies = trace.replies_sent()
    goodbye = [i for i, code, _ in replies if code == 221]
    expect(controls[0].closed is None or (goodbye and controls[0].closed > goodbye[0]),
           "the control connection stays open across transfers until QUIT",
           "closed after the 221", "closed before the session ended")

    # One new data connection per transfer, closed before the 226 that ends it.
    data_conns = sorted(trace.of("data", "accept") + trace.of("data", "connect"), key=lambda c: c.opened)
    expect_equal(len(data_conns), len(plan), f"one new data connection per transfer ({len(plan)} transfers)")
    completes = [i for i, code, _ in replies if code == 226]
    for (verb, arg, _), conn, complete in zip(plan, data_conns, completes):
        label = f"{verb} {arg}".rstrip()
        if conn.closed is None:
            raise GradingFailure(f"{label}: the server closes data connection #{conn.conn} when the transfer ends",
                                 f"a close of data connection #{conn.conn} before its 226",
                                 "no close in the server's trace: the data connection was never closed",
                                 "close the data socket (with data: ...) before replying 226; its close is the "
                                 "receiver's end of file")
        expect(conn.closed < complete, f"{label}: data connection #{conn.conn} is closed before the 226 reply",
               f"the close of data #{conn.conn}, then the 226",
               f"step {trace.step(complete)}, the 226, came before step {trace.step(conn.closed)}, "
               f"the close of data #{conn.conn}",
               "close the data connection (leave its with block) before replying 226: the receiver may "
               "take the 226 as the end of the file and find bytes still arriving")

    # Each passive listener accepts once and stops listening.
    for listener in trace.of("data", "listen"):
        accepted = [c for c in trace.of("data", "accept") if c.listener == listener.conn]
        if not accepted:
            continue
        expect_equal(len(accepted), 1, f"data listener #{listener.conn} accepts exactly one connection")
        if listener.closed is None:
            raise GradingFailure(f"the passive listener #{listener.conn} ({listener.local}) stops listening "
                                 "after its one accept", "a close of the listener after the accept",
                                 "it never stopped listening (no close in the server's trace)",
                                 "close the listening socket in ListeningEnd.open once it has accepted")
        expect(listener.closed < accepted[0].closed or listener.closed < completes[-1],
               f"listener #{listener.conn} is closed right after its accept",
               "closed before the transfer ends", "closed later")

    # File bytes never travel on the control channel.
    on_control = trace.control_bytes_sent()
    for name in ("binary.bin", "notes.txt"):
        chunk = content[name][:48]
        expect(chunk not in on_control, f"the bytes of {name} never travel on the control channel",
               "only commands and replies on the control connection", f"{chunk[:24]!r}... found on it")
    listing_on_control = [line for line in on_control.split(b"\r\n") if line.endswith((b" binary.bin", b"readme.txt"))
                          and not line[:3].isdigit()]
    expect(not listing_on_control, "the listing never travels on the control channel",
           "only commands and replies on the control connection", f"{listing_on_control[:2]!r} found on it",
           "send the listing on the data connection")
    expect(len(on_control) < 2000, "the control channel carries only short replies",
           "under 2000 bytes for this session", f"{len(on_control)} bytes")


# --- the client under test, against the reference server ----------------------------------

def _call(what: str, hint: str, function, *args):
    try:
        return function(*args)
    except (OSError, EOFError, ValueError) as err:
        raise GradingFailure(what, "success", f"{type(err).__name__}: {err}", hint) from None
    except Exception as err:
        if type(err).__name__ in ("FtpError", "ConnectionLost"):
            raise GradingFailure(what, "success", f"{type(err).__name__}: {err}", hint) from None
        raise


TRANSFER_HINT = ("passive mode: connect to the announced port first, then send the command and expect 150; "
                 "move the bytes; close the data connection; then read the 226")


@ex3
@points(3)
def test_client_get(files, workdir, reference_server, student_client, steps):
    """FtpClient.get downloads a binary file byte for byte"""
    root, content = files
    server = reference_server(root)
    client = student_client(server.address)
    for name in ("binary.bin", "notes.txt"):
        local = workdir / f"got-{name}"
        steps.note(f"client.get({name!r}, {local.name!r})")
        result = _call(f"client.get({name!r})", TRANSFER_HINT, client.get, name, str(local))
        expect(local.exists(), f"get {name} creates the local file", local.name, "no file")
        expect_same_bytes(local.read_bytes(), content[name], f"the downloaded {name}")
        expect_equal(result.bytes, len(content[name]), f"the TransferResult's byte count for {name}")


@ex3
@points(3)
def test_client_put(files, workdir, reference_server, student_client, steps):
    """FtpClient.put uploads a binary file byte for byte"""
    root, content = files
    server = reference_server(root)
    client = student_client(server.address)
    local = workdir / "local.bin"
    local.write_bytes(content["big.bin"])
    steps.note("client.put('local.bin', 'uploaded.bin')")
    _call("client.put('local.bin', 'uploaded.bin')", TRANSFER_HINT, client.put, str(local), "uploaded.bin")
    expect((root / "uploaded.bin").exists(), "the server stored uploaded.bin", "uploaded.bin", "no such file")
    expect_same_bytes((root / "uploaded.bin").read_bytes(), content["big.bin"], "the uploaded file on the server")


@ex3
@points(2)
def test_client_listing(files, reference_server, student_client, steps):
    """FtpClient.listing returns the LIST and NLST text"""
    server = reference_server(files[0])
    client = student_client(server.address)
    steps.note("client.listing('', names_only=True)")
    names = _call("client.listing(names_only=True)", TRANSFER_HINT, client.listing, "", True)
    expect_equal(sorted(line.rsplit("/", 1)[-1] for line in names.split("\r\n") if line),
                 ["big.bin", "binary.bin", "docs", "notes.txt"], "the NLST listing's names")
    steps.note("client.listing('docs')")
    long = _call("client.listing('docs')", TRANSFER_HINT, client.listing, "docs")
    expect("readme.txt" in long, "LIST docs names readme.txt", "a line ending in readme.txt", long)


@ex3
@points(3)
def test_client_two_channel_design(files, workdir, reference_server, student_client, client_trace, steps):
    """Trace: the client opens and closes a data connection per transfer, reads each 226, keeps one control connection"""
    root, content = files
    server = reference_server(root)
    client = student_client(server.address)
    local = workdir / "one.bin"
    steps.note("client.get('binary.bin'); client.command('NOOP')")
    _call("client.get('binary.bin')", TRANSFER_HINT, client.get, "binary.bin", str(local))
    reply = client.command("NOOP")
    expect_equal(str(reply)[:3], "200", "after a get, the reply to NOOP is NOOP's own 200",
                 "a transfer ends with a 226 on the control channel: read it before returning, or the "
                 "next command gets that old reply and every reply after it is one behind")
    steps.note("client.put(...); client.listing(); client.command('NOOP')")
    _call("client.put('one.bin', 'two.bin')", TRANSFER_HINT, client.put, str(local), "two.bin")
    _call("client.listing()", TRANSFER_HINT, client.listing, "")
    reply = client.command("NOOP")
    expect_equal(str(reply)[:3], "200", "after three transfers, NOOP's reply is 200",
                 "each transfer ends with a 226 on the control channel: read it before returning, or the "
                 "next command gets the old reply")
    trace = Trace.load(client_trace)
    data = sorted(trace.of("data"), key=lambda c: c.opened)
    data = [c for c in data if c.how != "listen"]
    expect_equal(len(data), 3, "three transfers, three data connections (connects in the client's trace)")
    controls = trace.of("control")
    expect_equal(len(controls), 1, "one control connection for all transfers")
    expect(controls[0].closed is None, "the control connection stays open", "open", "closed")
    # (When the client *reads* the 226 is not in the trace: the 226 may arrive
    # in the same recv as the 150. Reading it is checked by the NOOP above.)
    for conn in data:
        expect(conn.closed is not None, f"data connection #{conn.conn} is closed", "a close", "none",
               "close the data connection when the bytes are moved")
    commands = [verb for _, verb, _ in trace.commands_sent()]
    for verb in ("RETR", "STOR", "LIST"):
        index = commands.index(verb) if verb in commands else None
        expect(index is not None and commands[index - 1] in ("PASV", "EPSV"),
               f"{verb} follows a PASV (or EPSV)", "PASV, then the transfer command", commands)
