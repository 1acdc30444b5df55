"""Issue 14, the client's commands, against our own server: folders, delete,
rename, modification time, resume, mget/mput and lcd, and what `help` says.
(The same commands against pyftpdlib, vsftpd and proftpd: test_client_vs_servers.py.)
"""

from __future__ import annotations

import os

import pytest

from conftest import run_client
from solutions.ftpclient import FtpClient, FtpError

NEW_COMMANDS = ("mkdir", "rmdir", "delete", "rename", "reget", "lcd", "mget", "mput", "modtime")


@pytest.fixture
def client(ftp_server):
    client = FtpClient(*ftp_server.address, timeout=10)
    client.connect()
    client.login()
    yield client
    client.close()


def test_help_lists_every_command(ftp_server, client_dir):
    result = run_client(*ftp_server.address, ["help", "help rename", "quit"], client_dir)
    assert result.returncode == 0, result.stdout
    for command in NEW_COMMANDS + ("get", "put", "ls", "cd", "pwd"):
        assert command in result.stdout, command
    assert "rename <from> <to>" in result.stdout


def test_folders_delete_rename_and_modtime_on_our_server(client, server_root):
    (server_root / "a.txt").write_bytes(b"12345")
    client.mkdir("new")
    assert (server_root / "new").is_dir()
    client.rename("a.txt", "new/b.txt")
    assert (server_root / "new" / "b.txt").read_bytes() == b"12345"
    stamp = client.mtime("new/b.txt")
    assert len(stamp) >= 14 and stamp[:14].isdigit()
    with pytest.raises(FtpError) as not_empty:
        client.rmdir("new")
    assert not_empty.value.reply.code == 550
    client.delete("new/b.txt")
    client.rmdir("new")
    assert os.listdir(server_root) == []


def test_reget_appends_the_rest_and_the_check_passes(ftp_server, server_root, client_dir):
    data = os.urandom(1_000_000)
    (server_root / "big.bin").write_bytes(data)
    (client_dir / "big.bin").write_bytes(data[:400_000])
    result = run_client(*ftp_server.address, ["reget big.bin", "quit"], client_dir)
    assert result.returncode == 0, result.stdout
    assert "REST" not in result.stdout or "350" in result.stdout
    assert "600000 bytes received" in result.stdout
    assert "integrity: SHA-256 matches" in result.stdout
    assert (client_dir / "big.bin").read_bytes() == data


def test_reget_is_refused_where_feat_has_no_rest_stream(client, server_root, client_dir):
    client.feature_params.pop("REST", None)
    with pytest.raises(ValueError, match="REST STREAM"):
        client.resume("x", str(client_dir / "x"))
    assert os.listdir(client_dir) == []


def test_shell_commands_end_to_end_with_globs_and_lcd(ftp_server, server_root, client_dir):
    for name in ("one.csv", "two.csv", "note.txt"):
        (server_root / name).write_bytes(name.encode() * 50)
    for name in ("x.dat", "y.dat"):
        (client_dir / name).write_bytes(name.encode() * 50)
    (client_dir / "in").mkdir()
    result = run_client(*ftp_server.address, [
        "mkdir up", "cd up", "mput *.dat", "cd ..", "rename note.txt renamed.txt", "delete one.csv",
        "modtime renamed.txt", "lcd in", "mget *.csv *.txt", "mget *.none", "quit"], client_dir)
    assert result.returncode == 1, result.stdout            # mget *.none matched nothing
    assert "mget: *.none: no remote file matches" in result.stdout
    assert sorted(os.listdir(server_root / "up")) == ["x.dat", "y.dat"]
    assert sorted(os.listdir(server_root)) == ["renamed.txt", "two.csv", "up"]
    assert sorted(os.listdir(client_dir / "in")) == ["renamed.txt", "two.csv"]
    assert result.stdout.count("integrity: SHA-256 matches") == 4
    assert " UTC" in result.stdout                           # modtime, readable
