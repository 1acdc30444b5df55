"""The viewer on a log the real tracer wrote: a small scripted FTP exchange
over loopback sockets (PASV, RETR of known bytes, QUIT), both sides traced
into one file, then shown by ``python -m trace.view`` in a subprocess.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import threading
from pathlib import Path

from trace.tracer import Tracer, connected, listening

REPO_ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = bytes(range(256)) * 400                  # 102400 bytes
CHUNKS = (40000, 40000, 22400)


class Lines:
    """Reads CRLF lines from a (traced) socket."""

    def __init__(self, sock):
        self.sock, self.buffer = sock, b""

    def next(self) -> str:
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode()


def serve(listener, tracer: Tracer) -> None:
    control, _ = listener.accept()
    lines = Lines(control)
    control.sendall(b"220 tiny server\r\n")
    assert lines.next() == "PASV"
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen(1)
    data_listener = listening(raw, "data", tracer)
    port = data_listener.getsockname()[1]
    control.sendall(f"227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255})\r\n".encode())
    assert lines.next() == "RETR blob"
    tracer.emit("transfer_start", command="RETR", path="/blob", direction="download",
                conn=None, control=None)
    data, _ = data_listener.accept()
    data_listener.close()
    control.sendall(b"150 here it comes\r\n")
    sent = 0
    for size in CHUNKS:
        data.sendall(PAYLOAD[sent:sent + size])
        sent += size
    data.close()
    tracer.emit("transfer_end", command="RETR", path="/blob", direction="download",
                conn=data.conn, control=None, bytes=sent, duration=0.01,
                sha256=hashlib.sha256(PAYLOAD).hexdigest(), verdict="ok")
    control.sendall(b"226 done\r\n")
    assert lines.next() == "QUIT"
    control.sendall(b"221 bye\r\n")
    control.close()
    listener.close()


def run_client(port: int, tracer: Tracer) -> bytes:
    control = connected(socket.create_connection(("127.0.0.1", port)), "control", tracer)
    lines = Lines(control)
    assert lines.next().startswith("220")
    control.sendall(b"PASV\r\n")
    reply = lines.next()
    numbers = [int(n) for n in reply[reply.index("(") + 1:reply.index(")")].split(",")]
    control.sendall(b"RETR blob\r\n")
    data = connected(socket.create_connection(("127.0.0.1", numbers[4] * 256 + numbers[5])),
                     "data", tracer)
    received = b""
    while chunk := data.recv(16384):
        received += chunk
    data.close()
    assert lines.next().startswith("150")
    assert lines.next().startswith("226")
    tracer.emit("transfer_end", command="RETR", path="blob", direction="download",
                conn=data.conn, control=None, bytes=len(received), duration=0.012,
                sha256=hashlib.sha256(received).hexdigest(), verdict="verified")
    control.sendall(b"QUIT\r\n")
    assert lines.next().startswith("221")
    control.close()
    return received


def test_a_real_loopback_session(tmp_path):
    log = tmp_path / "session.log"
    server_tracer, client_tracer = Tracer(log, "server"), Tracer(log, "client")
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen(1)
    listener = listening(raw, "control", server_tracer)
    server = threading.Thread(target=serve, args=(listener, server_tracer))
    server.start()
    try:
        received = run_client(listener.getsockname()[1], client_tracer)
    finally:
        server.join(timeout=10)
        server_tracer.close()
        client_tracer.close()
    assert received == PAYLOAD

    result = subprocess.run([sys.executable, "-m", "trace.view", "--width", "120", "--no-color",
                             str(log)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "log only" not in out                         # both sides matched up
    rows = out.splitlines()

    def row(needle: str) -> str:
        (found,) = [r for r in rows if needle in r]
        return found

    assert row("── RETR blob ──").rstrip().endswith("▶")
    assert "◀" in row("227 Entering Passive Mode")
    segments = row("100.0 KiB @ 0–102399")
    assert "◀" in segments and "in 3 segments" in segments
    assert "#2 data: connect" in out and "server closes #2" in out
    summary = out[out.index("Connections"):]
    data_row = next(r for r in summary.splitlines() if r.startswith("#2 data"))
    assert "100.0 KiB" in data_row and "0 B" in data_row
    control_row = next(r for r in summary.splitlines() if r.startswith("#1 control"))
    client_said = len(b"PASV\r\nRETR blob\r\nQUIT\r\n")
    assert f" {client_said} B" in control_row
    transfer_row = next(r for r in summary.splitlines() if r.startswith("RETR"))
    assert "/blob" in transfer_row and "102,400 B" in transfer_row and "verified" in transfer_row
    assert "No error replies." in out
