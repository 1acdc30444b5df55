"""Bad input, fuzzed: property tests of the sans-IO parser, and a live fuzz.

The property tests (hypothesis) state what the protocol core promises for
*any* input: however a byte stream is cut into reads, the same lines come
out; every line gives exactly one event; nothing buffers without limit;
formatting and parsing round-trip; malformed arguments raise ValueError and
nothing else.

The live fuzz throws more than 10,000 random and mutated control lines at a
real server from several connections at once, pipelined: binary junk, huge
arguments, malformed PORT and EPRT, commands out of order, now and then a
proper transfer. The server must never die, must answer every line with a
well-formed reply or close cleanly (after 221 or 421), and must be back to
its baseline of threads and open file descriptors afterwards.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.bench_ftp import settle
from solutions.ftpclient import FtpClient
from solutions.protocol import (MAX_LINE, NEED_DATA, Command, CommandParser, ConnectionClosed,
                                LineFramer, LineTooLong, MalformedLine, NotUtf8, Reply, ReplyParser,
                                format_command, format_eprt_arg, format_host_port, format_reply,
                                parse_command, parse_eprt_arg, parse_epsv_reply, parse_host_port,
                                parse_pasv_reply)

# --- property tests of the protocol core ---------------------------------------

# A line as a client might send it: any bytes but LF, not ending in CR (the
# framer strips one CR before the LF, so "abc\r" + CRLF reads as "abc\r").
line_bytes = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")).filter(
    lambda b: not b.endswith(b"\r"))


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` cut at the given points, as TCP might deliver it."""
    edges = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(edges, edges[1:])]


def frame_all(framer: LineFramer, chunks: list[bytes]) -> list:
    out = []
    for chunk in chunks:
        framer.feed(chunk)
        while (line := framer.next_line()) is not None:
            out.append(line)
    return out


@given(st.lists(line_bytes, max_size=20), st.lists(st.booleans(), min_size=20, max_size=20),
       st.lists(st.integers(min_value=0), max_size=30))
def test_framer_gives_the_same_lines_however_the_stream_is_cut(lines, crlf, points):
    stream = b"".join(line + (b"\r\n" if crlf[i] else b"\n") for i, line in enumerate(lines))
    assert frame_all(LineFramer(), cut(stream, points)) == lines


@given(st.lists(st.integers(min_value=0, max_value=3 * MAX_LINE), max_size=12),
       st.lists(st.integers(min_value=0), max_size=30))
def test_overlong_lines_are_reported_once_each_and_memory_stays_bounded(lengths, points):
    stream = b"".join(b"a" * n + b"\r\n" for n in lengths)
    framer = LineFramer()
    out = []
    for chunk in cut(stream, points):
        framer.feed(chunk)
        while (line := framer.next_line()) is not None:
            out.append(line)
        # Whatever arrives, the framer never holds much more than one line.
        assert len(framer.unfinished()) <= MAX_LINE + 1 + len(chunk)
    expected = [b"a" * n if n <= MAX_LINE else LineTooLong for n in lengths]
    assert [x if isinstance(x, bytes) else LineTooLong for x in out] == expected


@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0), max_size=20))
def test_any_bytes_give_one_event_per_line_and_never_raise(data, points):
    parser = CommandParser()
    events = []
    for chunk in cut(data, points):
        parser.receive_data(chunk)
        while (event := parser.next_event()) is not NEED_DATA:
            events.append(event)
    assert len(events) == data.count(b"\n")
    assert all(isinstance(e, (Command, MalformedLine, NotUtf8, LineTooLong)) for e in events)
    parser.receive_data(b"")                      # the client closes
    assert isinstance(parser.next_event(), ConnectionClosed)


verbs = st.from_regex(r"[A-Za-z]{3,4}", fullmatch=True)
arguments = st.text(max_size=100).map(lambda t: t.replace("\r", "").replace("\n", ""))


@given(verbs, arguments)
def test_commands_round_trip(verb, arg):
    line = format_command(verb, arg)
    assert line.endswith(b"\r\n")
    assert parse_command(line[:-2].decode()) == Command(verb.upper(), arg)


reply_lines = st.text(max_size=80).map(lambda t: t.replace("\r", "").replace("\n", ""))


@given(st.integers(min_value=100, max_value=599), st.lists(reply_lines, min_size=1, max_size=6),
       st.lists(st.integers(min_value=0), max_size=10))
def test_replies_round_trip_however_they_arrive(code, lines, points):
    parser = ReplyParser()
    events = []
    for chunk in cut(format_reply(code, "\n".join(lines)), points):
        parser.receive_data(chunk)
        while (event := parser.next_event()) is not NEED_DATA:
            events.append(event)
    assert len(events) == 1 and isinstance(events[0], Reply)
    assert events[0].code == code
    # Middle lines that start with a digit arrive indented by one space.
    middle = [f" {line}" if line[:1].isdigit() else line for line in lines[1:-1]]
    expected = lines if len(lines) == 1 else [lines[0], *middle, lines[-1]]
    assert events[0].text == "\n".join(expected)


@given(st.ip_addresses(v=4), st.integers(min_value=0, max_value=65535))
def test_host_port_round_trips(address, port):
    text = format_host_port(str(address), port)
    assert parse_host_port(text) == (str(address), port)
    assert parse_pasv_reply(f"Entering Passive Mode ({text}).") == (str(address), port)


@given(st.ip_addresses(), st.integers(min_value=1, max_value=65535))
def test_eprt_round_trips(address, port):
    assert parse_eprt_arg(format_eprt_arg(str(address), port)) == (str(ipaddress.ip_address(address)), port)


@given(st.text(max_size=60))
@settings(max_examples=300)
def test_malformed_arguments_raise_value_error_and_nothing_else(text):
    for parse in (parse_host_port, parse_eprt_arg, parse_pasv_reply, parse_epsv_reply):
        try:
            parse(text)
        except ValueError:
            pass


# --- the live fuzz ---------------------------------------------------------------

CONNECTIONS = 8
LINES_PER_CONNECTION = 1300                 # 8 x 1300 = 10,400 lines
REPLY = re.compile(rb"([1-5]\d\d)([ -])([^\x00-\x1f\x7f]*)")


VALID = [
    "USER anonymous", "USER x", "PASS x", "PASS", "NOOP", "SYST", "FEAT", "HELP", "PWD",
    "CWD sub", "CWD ..", "CWD /", "CWD /nowhere", "CDUP", "TYPE I", "TYPE A", "TYPE A N", "TYPE E",
    "TYPE L 8", "MODE S", "MODE B", "STRU F", "STRU R", "ALLO 100", "ALLO x", "PASV", "EPSV",
    "EPSV 1", "EPSV 2", "EPSV 3", "LIST", "LIST -la", "NLST", "LIST sub", "NLST /sub/../",
    "RETR small.txt", "RETR missing", "RETR sub", "STOR fuzz{n}.bin", "STOR sub", "STOR /",
    "SIZE small.txt", "SIZE sub", "HASH small.txt", "HASH ../x", "OPTS UTF8 ON", "OPTS HASH SHA-256",
    "OPTS X", "REIN", "ABOR", "DELE small.txt", "MKD new", "RNFR small.txt", "SITE CHMOD 777 x",
    "APPE x", "REST 100", "STAT", "MLSD", "MDTM small.txt", "ACCT x", "SMNT x", "PORT {port}",
    "EPRT |1|127.0.0.1|{p}|", "EPRT |2|::1|{p}|", "RETR ../../etc/passwd", "CWD ../..", "QUIT",
]


def malformed_port(rng: random.Random) -> str:
    numbers = [str(rng.choice([0, 1, 127, 255, 256, 999, -1, 65536, rng.randint(0, 300)]))
               for _ in range(rng.choice([0, 1, 5, 6, 6, 6, 7, 12]))]
    separator = rng.choice([",", ",", ", ", ";", ".", ""])
    if rng.random() < 0.5:
        return "PORT " + separator.join(numbers)
    delimiter = rng.choice("|!|#$ ,\x00é")
    fields = [rng.choice(["1", "2", "3", "", "x", "01"]),
              rng.choice(["127.0.0.1", "127.0.0.2", "::1", "10.0.0.1", "256.1.1.1", "", "localhost",
                          "127.1", "::ffff:127.0.0.1", "1.2.3.4.5"]),
              rng.choice(["0", "21", "1023", "1024", "65535", "65536", "-1", "", "x", str(rng.randint(0, 99999))])]
    fields = fields[:rng.randint(0, 3)] if rng.random() < 0.2 else fields
    return "EPRT " + delimiter + delimiter.join(fields) + delimiter * rng.choice([0, 1, 1, 2])


def mutate(line: bytes, rng: random.Random) -> bytes:
    data = bytearray(line)
    for _ in range(rng.randint(1, 4)):
        where = rng.randrange(len(data) + 1)
        action = rng.randrange(8)
        if action == 0 and data:
            data[where % len(data)] ^= 1 << rng.randrange(8)
        elif action == 1:
            data[where:where] = bytes([rng.randrange(256)])
        elif action == 2 and data:
            del data[where % len(data)]
        elif action == 3:
            data[where:where] = data[where:where + rng.randint(1, 20)] * rng.randint(1, 50)
        elif action == 4:
            data = bytearray(data.swapcase())
        elif action == 5:
            data[where:where] = rng.choice([b"\r", b"\x00", b"\xff", b"\xc0\xaf", b"\x1b[2J", b"\t", b" "])
        elif action == 6:
            del data[where:]
        else:
            data[where:where] = rng.choice([b"..", b"/", b"\\", b"%s%n", b"../" * 10, "é".encode()])
    return bytes(data)


def fuzz_line(rng: random.Random) -> bytes:
    kind = rng.random()
    port = rng.randint(1024, 65535)
    valid = rng.choice(VALID).format(n=rng.randrange(100), port=format_host_port("127.0.0.1", port),
                                      p=port).encode()
    if kind < 0.35:
        line = valid
    elif kind < 0.50:
        line = os.urandom(rng.randint(0, 300))                    # binary junk
    elif kind < 0.53:
        verb = rng.choice([b"STOR ", b"RETR ", b"USER ", b"CWD ", b"", b"PORT "])
        line = verb + rng.choice([b"A", b"/", b"\xff", b"a/"]) * rng.randint(2000, 70_000)
    elif kind < 0.68:
        line = malformed_port(rng).encode("utf-8", "surrogatepass")
    else:
        line = mutate(valid, rng)
    return line.replace(b"\n", b"?")


class Closed(Exception):
    """The server closed the connection."""


class StrictControl:
    """A control connection that checks every reply line to the letter."""

    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=15)
        self.buffer = bytearray()
        code, _ = self.reply()
        assert code == 220

    def line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                assert not self.buffer, f"closed in the middle of a line: {bytes(self.buffer)!r}"
                raise Closed()
            self.buffer += chunk
        line = bytes(self.buffer[:end])
        del self.buffer[:end + 2]
        return line

    def reply(self) -> tuple[int, list[bytes]]:
        first = self.line()
        match = REPLY.fullmatch(first)
        assert match, f"not a well-formed reply line: {first!r}"
        first.decode("utf-8")                      # replies are UTF-8 (RFC 2640)
        lines = [first]
        if match.group(2) == b"-":
            while True:
                line = self.line()
                assert b"\n" not in line and b"\r" not in line, line
                lines.append(line)
                if line[:4] == match.group(1) + b" ":
                    break
        return int(match.group(1)), lines

    def final_reply(self) -> int:
        """The final reply to one command: a 1xx may come first, then 2xx-5xx."""
        code, _ = self.reply()
        if code < 200:
            code, _ = self.reply()
            assert code >= 200, f"two preliminary replies in a row ({code})"
        return code

    def send_lines(self, lines: list[bytes], rng: random.Random) -> None:
        self.sock.sendall(b"".join(line + rng.choice([b"\r\n", b"\r\n", b"\n"]) for line in lines))

    def close(self) -> None:
        self.sock.close()


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    lines: int = 0
    replies: int = 0
    codes: dict = field(default_factory=dict)
    clean_closes: int = 0
    unanswered_after_close: int = 0
    transfers: int = 0
    connections: int = 0

    def add(self, **amounts) -> None:
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def saw(self, code: int) -> None:
        with self.lock:
            self.codes[code // 100] = self.codes.get(code // 100, 0) + 1


def proper_transfer(control: StrictControl, rng: random.Random, tally: Tally) -> int:
    """PASV, connect, then a real RETR, LIST or STOR, as a client would.
    Returns the number of command lines sent."""
    control.send_lines([b"PASV"], rng)
    code, lines = control.reply()
    tally.add(lines=1, replies=1)
    tally.saw(code)
    if code != 227:
        return 1
    host, port = parse_pasv_reply(lines[0][4:].decode())
    verb = rng.choice([b"RETR small.txt", b"LIST", b"NLST sub", b"STOR fuzz-up.bin"])
    with socket.create_connection(("127.0.0.1", port), timeout=15) as data:
        control.send_lines([verb], rng)
        tally.add(lines=1)
        code, _ = control.reply()
        if code == 150:
            if verb.startswith(b"STOR"):
                data.sendall(os.urandom(rng.randint(0, 100_000)))
            else:
                while data.recv(65536):
                    pass
            data.close()
            code, _ = control.reply()
            tally.add(transfers=1)
        tally.add(replies=1)
        tally.saw(code)
    return 2


def fuzz_worker(address, seed: int, tally: Tally, failures: list) -> None:
    rng = random.Random(seed)
    control = None
    sent = 0
    try:
        while sent < LINES_PER_CONNECTION:
            if control is None:
                control = StrictControl(address)
                tally.add(connections=1)
                if rng.random() < 0.8:
                    # Mostly logged in, so the commands get past 530 to their handlers.
                    control.send_lines([b"USER anonymous", b"PASS fuzz"], rng)
                    assert [control.final_reply(), control.final_reply()] == [331, 230]
                    sent += 2
                    tally.add(lines=2, replies=2)
                    tally.saw(331)
                    tally.saw(230)
            if rng.random() < 0.03:
                sent += proper_transfer(control, rng, tally)
                continue
            batch = [fuzz_line(rng) for _ in range(rng.randint(1, 16))]
            control.send_lines(batch, rng)
            sent += len(batch)
            tally.add(lines=len(batch))
            for answered in range(len(batch)):
                try:
                    code = control.final_reply()
                except Closed:
                    raise AssertionError(f"closed without 221/421 after {answered} of {batch!r}")
                tally.add(replies=1)
                tally.saw(code)
                if code in (221, 421):               # the server says goodbye, then closes
                    with pytest.raises(Closed):
                        control.line()
                    tally.add(clean_closes=1, unanswered_after_close=len(batch) - answered - 1)
                    control.close()
                    control = None
                    break
    except BaseException as failure:         # reported by the test, with the seed to replay it
        failures.append(f"seed {seed}: {type(failure).__name__}: {failure}")
    finally:
        if control is not None:
            control.close()


@pytest.fixture
def fuzz_server(server_process, server_root):
    if not Path("/proc/self/status").exists():
        pytest.skip("counting threads and descriptors needs Linux's /proc")
    (server_root / "small.txt").write_bytes(os.urandom(100))
    (server_root / "sub").mkdir()
    (server_root / "sub" / "inner.txt").write_text("inner")
    server = server_process(server_root, "--accept-timeout", "0.05", "--transfer-timeout", "2",
                            "--idle-timeout", "30", "--max-clients", "64", "--max-per-ip", "64")
    return server.process, server.address


@pytest.mark.timeout(90)
def test_live_fuzz_of_ten_thousand_lines(fuzz_server, tmp_path):
    process, address = fuzz_server
    # Warm up (imports and first-use allocations), then take the baseline.
    warm = FtpClient(*address)
    warm.connect()
    warm.login()
    warm.listing()
    warm.quit()
    # The baseline: the main thread alone (it accepts), once the warm-up session has ended.
    baseline = settle(process.pid)

    tally, failures = Tally(), []
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(1 << 30)))
    started = time.monotonic()
    workers = [threading.Thread(target=fuzz_worker, args=(address, seed + i, tally, failures))
               for i in range(CONNECTIONS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started

    assert process.poll() is None, "the server died"
    assert not failures, failures
    assert tally.lines >= 10_000
    assert tally.replies + tally.unanswered_after_close == tally.lines
    after = settle(process.pid, baseline)
    print(f"\nfuzz: seed {seed}: {tally.lines} lines on {tally.connections} connections "
          f"({CONNECTIONS} at a time) in {elapsed:.1f} s; {tally.replies} replies, all well-formed "
          f"(by class: {dict(sorted(tally.codes.items()))}); {tally.clean_closes} clean closes "
          f"leaving {tally.unanswered_after_close} lines unanswered; {tally.transfers} real transfers; "
          f"threads/fds {baseline} before, {after} after")
    assert after == baseline, f"threads/fds {after}, baseline {baseline}"

    # And it still works: a whole put, get and check.
    client = FtpClient(*address)
    client.connect()
    client.login()
    (tmp_path / "after.bin").write_bytes(os.urandom(300_000))
    client.put(str(tmp_path / "after.bin"), "after.bin")
    client.get("after.bin", str(tmp_path / "back.bin"))
    assert client.verify(str(tmp_path / "back.bin"), "after.bin").ok
    assert (tmp_path / "back.bin").read_bytes() == (tmp_path / "after.bin").read_bytes()
    client.quit()
