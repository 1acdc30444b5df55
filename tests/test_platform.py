"""Students bring Linux, macOS and Windows laptops; the kit runs from its folder."""

import ast
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

MAIN_PATH = [REPO_ROOT / "solutions" / name for name in
             ("protocol.py", "helper.py", "datachannel.py", "filesystem.py", "session.py",
              "transfers.py", "safetext.py", "server.py", "clientcontrol.py", "ftpclient.py",
              "client.py", "shelltransfers.py", "shelltext.py")] + \
            [REPO_ROOT / "trace" / name for name in ("tracer.py", "reader.py", "schema.py", "demo.py")]

# Calls that do not exist on Windows (or macOS) and have no fallback there.
NOT_PORTABLE = {"fork", "forkpty", "setsid", "epoll", "inotify", "splice", "SO_REUSEPORT",
                "TCP_QUICKACK", "MSG_ZEROCOPY", "fcntl", "pipe2", "sched_setaffinity"}


@pytest.mark.parametrize("path", MAIN_PATH, ids=lambda p: p.name)
def test_no_platform_specific_calls_on_the_main_path(path):
    tree = ast.parse(path.read_text())
    names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not names & NOT_PORTABLE
    assert "/proc/" not in path.read_text()


def test_transfer_works_without_os_sendfile(tmp_path):
    """Windows has no os.sendfile: socket.sendfile must fall back to send()."""
    code = (
        "import os, hashlib, sys\n"
        "del os.sendfile\n"
        "from pathlib import Path\n"
        "from solutions.filesystem import Root\n"
        "from solutions.server import Server\n"
        "from solutions.session import ServerConfig\n"
        "from solutions.ftpclient import FtpClient\n"
        "root = Path(sys.argv[1]); data = os.urandom(3_000_000); (root / 'f.bin').write_bytes(data)\n"
        "server = Server('127.0.0.1', 0, ServerConfig(Root(root))).start()\n"
        "c = FtpClient(*server.address); c.connect(); c.login()\n"
        "c.get('f.bin', str(root / 'back.bin')); c.put(str(root / 'back.bin'), 'again.bin')\n"
        "assert (root / 'again.bin').read_bytes() == data\n"
        "print('fallback ok')\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "fallback ok", result.stderr


def test_original_style_script_runs_from_the_repo_root(server_process, server_root):
    """`python solutions/server.py PORT`, as the original project ran it."""
    (server_root / "x.txt").write_bytes(b"hello")
    server = server_process(server_root, script=True)
    import ftplib
    with ftplib.FTP() as ftp:
        ftp.connect(server.host, server.port, timeout=10)
        ftp.login()
        assert ftp.nlst() == ["x.txt"]


@pytest.mark.parametrize("module", ["trace.schema", "trace.demo", "trace.view"])
def test_python_dash_m_trace_finds_the_kit_not_the_standard_library(module, tmp_path):
    """From the repo root, `python -m trace.X` must import this kit's trace
    package; the standard library's trace module has no submodules."""
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_the_demo_records_a_valid_session(tmp_path):
    log = tmp_path / "session.log"
    result = subprocess.run([sys.executable, "-m", "trace.demo", "--log", str(log), "--no-show"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "550 missing.txt" in result.stdout and "221 Goodbye." in result.stdout
    check = subprocess.run([sys.executable, "-m", "trace.schema", str(log)], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout


def test_client_script_style_runs_too(ftp_server, client_dir):
    host, port = ftp_server.address
    result = subprocess.run([sys.executable, str(REPO_ROOT / "solutions" / "client.py"), host, str(port)],
                            input="ls\nquit\n", cwd=client_dir, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "221 Goodbye." in result.stdout
