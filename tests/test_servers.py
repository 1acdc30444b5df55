"""The test launcher (tests/servers.py): every server comes up, answers, and goes away.

Also issue 13: a server that fails to start is reported with its own error,
not with "I/O operation on closed file" from reading a pipe already closed.
"""

from __future__ import annotations

import ftplib
import io

import pytest

from servers import LAUNCHERS, ServerFailedToStart, ServerUnavailable, start_ftpkit


@pytest.mark.parametrize("kind", sorted(LAUNCHERS))
def test_each_server_serves_its_root_and_is_reaped(kind, server_root, tmp_path):
    (server_root / "hello.txt").write_bytes(b"hello from the root\n")
    try:
        server = LAUNCHERS[kind](server_root, tmp_path / "work")
    except ServerUnavailable as missing:
        pytest.skip(str(missing))
    with server:
        session = ftplib.FTP()
        session.connect(*server.address, timeout=10)
        session.login()
        received = io.BytesIO()
        session.retrbinary("RETR hello.txt", received.write)
        assert received.getvalue() == b"hello from the root\n"
        # vsftpd refuses a writable anonymous root: uploads go to upload/.
        target = "upload/up.bin" if kind == "vsftpd" else "up.bin"
        session.storbinary(f"STOR {target}", io.BytesIO(b"u" * 5000))
        assert (server_root / target).read_bytes() == b"u" * 5000
        session.quit()
    assert server.process.returncode is not None       # stopped and reaped


def test_a_server_that_cannot_start_is_reported_with_its_own_error(tmp_path):
    with pytest.raises(ServerFailedToStart) as failure:
        start_ftpkit(tmp_path / "no-such-folder", tmp_path / "work")
    message = str(failure.value)
    assert "exited with status 2" in message
    assert "no-such-folder: not a directory" in message       # the server's own words
    assert "closed file" not in message


def test_the_server_process_fixture_reports_the_real_error(server_process, tmp_path):
    with pytest.raises(ServerFailedToStart, match="not a directory"):
        server_process(tmp_path / "missing")


def test_server_output_can_be_read_while_it_runs_and_after_it_stops(server_process, server_root):
    server = server_process(server_root)
    assert server.stdout().startswith("listening on ")
    server.stop()
    server.stop()                                           # twice is fine
    assert server.stdout().startswith("listening on ")       # still readable: no pipe to close
