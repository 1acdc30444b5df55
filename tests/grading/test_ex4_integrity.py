"""Exercise 4: integrity and errors. SHA-256 over the whole file (HASH),
SIZE, a client that verifies what it moved, and error replies that cost
one command, never the session."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from tests.grading.harness import IO_TIMEOUT, GradingFailure, expect, expect_equal
from tests.grading.peers import data_connect, parse_227, read_to_eof

ex4 = pytest.mark.ex4


def points(n):
    return pytest.mark.points(n)


@ex4
@points(3)
@pytest.mark.timeout(10)
def test_file_sha256(code, files, steps):
    """file_sha256 hashes the whole file, or exactly the byte range asked for"""
    helper = code.module("helper")
    root, content = files
    data = content["big.bin"]
    steps.note(f"file_sha256('big.bin') of a {len(data)}-byte file")
    actual = helper.file_sha256(root / "big.bin")
    expected = hashlib.sha256(data).hexdigest()
    if actual != expected:
        hint = "compare with the expected digest"
        for cut in (4096, 8192, 65536, 131072, 262144, 524288):
            if actual == hashlib.sha256(data[:cut]).hexdigest():
                hint = (f"that is the SHA-256 of the first {cut} bytes only: keep reading blocks until "
                        "read() returns b'' (or the end of the range)")
        raise GradingFailure(f"file_sha256 of the {len(data)}-byte big.bin", expected, actual, hint)
    for start, end in [(10, 300_010), (0, 0), (699_990, 700_000), (5, 5_000_000)]:
        steps.note(f"file_sha256('big.bin', {start}, {end})")
        expect_equal(helper.file_sha256(root / "big.bin", start, end), hashlib.sha256(data[start:end]).hexdigest(),
                     f"file_sha256 of bytes [{start}, {end})", "start at start, stop at end (exclusive)")


@ex4
@points(3)
def test_server_hash_and_size(files, student_server, probe):
    """HASH answers 213 SHA-256 0-N <hex> <path>; SIZE answers the size; a missing file gets 550"""
    root, content = files
    server = student_server(root)
    control = probe(server.address)
    control.login()
    data = content["big.bin"]
    size = control.command("SIZE big.bin", 213)
    expect_equal(size.text.strip(), str(len(data)), "SIZE big.bin")
    reply = control.command("HASH big.bin", 213)
    expected = f"SHA-256 0-{len(data)} {hashlib.sha256(data).hexdigest()} big.bin"
    if reply.text != expected:
        hint = "213 SHA-256 0-<size> <hex digest of the whole file> <path>"
        if hashlib.sha256(data[:262144]).hexdigest() in reply.text:
            hint = "the digest is that of the first 262144 bytes only: hash the whole file"
        raise GradingFailure("the reply to HASH big.bin (a 700000-byte file)", f"213 {expected}", str(reply), hint)
    control.command("HASH docs/readme.txt", 213)
    control.command("HASH missing.bin", 550)
    control.command("NOOP", 200, "the session goes on after the 550")


@ex4
@points(3)
def test_server_errors_cost_one_command_not_the_session(files, student_server, probe):
    """Errors are answered with their code and the session goes on"""
    root, content = files
    server = student_server(root)
    control = probe(server.address)
    control.login()
    control.command("RETR notes.txt", 425, "RETR before any PASV: 425, use PASV first")
    host, port = parse_227(control.command("PASV", 227).text)
    data = data_connect((host, port), "connect to the announced port")
    reply = control.command("RETR missing.txt", what="RETR of a missing file")
    expect_equal(reply.code, 550, "RETR of a missing file")
    data.close()
    control.command("NOOP", 200, "NOOP after the 550: the control connection must stay open and answer",)
    control.command("STOR docs", 553, "STOR onto a directory")
    control.command("CWD nowhere", 550, "CWD to a missing directory")
    control.command("XYZ", 502, "an unknown command")
    reply = control.command("HASH notes.txt", 213, "HASH after the errors: the session still works")
    expect(hashlib.sha256(content["notes.txt"]).hexdigest() in reply.text, "HASH notes.txt's digest",
           hashlib.sha256(content["notes.txt"]).hexdigest(), reply.text)
    host, port = parse_227(control.command("PASV", 227).text)
    data = data_connect((host, port), "connect to the announced port")
    control.command("RETR notes.txt", 150)
    expect_equal(read_to_eof(data, "RETR notes.txt after the errors"), content["notes.txt"],
                 "a transfer after the errors")
    control.reply("the 226 after RETR notes.txt")


@ex4
@points(3)
def test_client_verify(files, workdir, reference_server, student_client, steps):
    """FtpClient.verify compares SHA-256 digests (HASH), and notices a damaged copy"""
    root, content = files
    server = reference_server(root)
    client = student_client(server.address)
    local = workdir / "copy.bin"
    local.write_bytes(content["big.bin"])
    steps.note("client.verify('copy.bin', 'big.bin') with an identical copy")
    verdict = client.verify(str(local), "big.bin")
    expect_equal((verdict.method, verdict.ok), ("HASH", True), "verify of an identical copy (method, ok)",
                 "the server lists HASH in FEAT: compare the hex digests of the local and the remote file")
    damaged = bytearray(content["big.bin"])
    damaged[500_000] ^= 0xFF
    local.write_bytes(bytes(damaged))
    steps.note("client.verify(...) after flipping byte 500000 of the local copy")
    verdict = client.verify(str(local), "big.bin")
    expect_equal((verdict.method, verdict.ok), ("HASH", False), "verify of a copy with one byte changed",
                 "the whole file must be hashed: byte 500000 is past the first block")


@ex4
@points(3)
def test_client_shell_reports_integrity_and_failures(impl, sandbox, files, workdir, reference_server, steps):
    """The client program: get and put verified, a missing file reported, exit status 1"""
    root, content = files
    server = reference_server(root)
    (workdir / "mine.txt").write_bytes(content["notes.txt"])
    sandbox.give(workdir)
    commands = "get binary.bin\nget missing.bin\nput mine.txt\nls\nquit\n"
    # The program's own --timeout as short as the grader's: a client that waits for
    # a reply it never recognises gives up in seconds, not in the default 30.
    arguments = ["--timeout", f"{IO_TIMEOUT:g}", server.host, str(server.port)]
    steps.note(f"python -m {impl.package}.client {' '.join(arguments)} with stdin {commands!r}")
    try:
        run = sandbox.run(sandbox.python(f"{impl.package}.client", arguments),
                          cwd=workdir, input=commands, timeout=15)
    except subprocess.TimeoutExpired as error:
        raise GradingFailure("the client program runs the commands and exits", "exit within 15 s",
                             f"still running: it hung ({getattr(error, 'reason', 'after 15 s')})") from None
    output = run.stdout + run.stderr
    steps.note(f"the client exited with status {run.returncode}; it printed:\n" +
               "\n".join("        | " + line for line in output.splitlines()[-25:]))
    expect((workdir / "binary.bin").read_bytes() == content["binary.bin"] if (workdir / "binary.bin").exists() else False,
           "get binary.bin downloads the file", "binary.bin, byte for byte", "missing or different")
    expect(output.count("SHA-256 matches") == 2, "get and put each report a verified SHA-256",
           "'integrity: SHA-256 matches ...' twice", f"{output.count('SHA-256 matches')} times")
    expect("550" in output, "get of a missing file shows the server's 550", "550 in the output", "no 550")
    expect_equal(run.returncode, 1, "the exit status when one command failed")
    expect((root / "mine.txt").exists(), "put mine.txt ran after the failed get", "mine.txt on the server", "missing")
