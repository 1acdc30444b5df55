"""The leak check itself can fail (issue 10): inner pytest sessions that leak.

Each test runs a tiny pytest session in a subprocess with only the leak-check
plugin (tests/leakcheck.py) loaded, and reads its verdict. The leaks are
real (a sleeping process, a detached one, a temp folder, a network
namespace), and this test removes whatever the inner check did not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from conftest import wait_for
from leakcheck import compare_dev, snapshot_dev

TESTS = Path(__file__).resolve().parent


def run_inner_session(folder: Path, test_source: str) -> subprocess.CompletedProcess:
    """Run ``test_source`` as a one-file pytest session with the leak check loaded."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "test_inner.py").write_text(textwrap.dedent(test_source))
    # Only the leak check: no plugin autoloading (a cold pytest with every
    # installed plugin takes seconds on a busy machine).
    env = dict(os.environ, PYTHONPATH=str(TESTS), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    env.pop("FTPKIT_TEST_SESSION", None)        # the inner session makes its own token
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "leakcheck", "-p", "no:cacheprovider",
         "-c", str(folder / "pytest.ini"), "--rootdir", str(folder), "--basetemp", str(folder / "basetemp"),
         str(folder / "test_inner.py")],
        cwd=folder, env=env, capture_output=True, text=True, timeout=60)


def is_running(pid: int, name: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return f"({name})" in stat and stat[stat.rfind(")") + 2] not in "ZX"


def test_a_clean_session_passes(tmp_path):
    result = run_inner_session(tmp_path, """
        import subprocess
        def test_tidy(tmp_path):
            subprocess.run(["true"], check=True)
            (tmp_path / "kept-in-basetemp").mkdir()      # pytest's own temp folder is fine
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LEAK CHECK" not in result.stdout


def test_a_leaking_session_fails_and_names_each_leak(tmp_path):
    pid_file, daemon_file = tmp_path / "child.pid", tmp_path / "daemon.pid"
    namespace = f"ftpkit-leaktest-{os.getpid()}"
    can_make_namespace = os.geteuid() == 0 and shutil.which("ip") is not None
    try:
        result = run_inner_session(tmp_path, f"""
            import os, subprocess, tempfile
            def test_leaks():
                # a child the test never stops
                child = subprocess.Popen(["sleep", "61"])
                open({str(pid_file)!r}, "w").write(str(child.pid))
                # a detached grandchild, as a daemon would be: not a descendant any more
                subprocess.run(["sh", "-c", "sleep 62 & echo $! > {daemon_file}"], check=True)
                open(tempfile.mkdtemp(prefix="kept-") + "/x", "w").write("left behind")
                tempfile.mkstemp(prefix="stray-")
                if {can_make_namespace}:
                    subprocess.run(["ip", "netns", "add", {namespace!r}], check=True)
        """)
        child_pid = int(pid_file.read_text())
        daemon_pid = int(daemon_file.read_text())
        report = result.stdout
        assert result.returncode == 1, report + result.stderr
        assert "1 passed" in report                     # the test passed; the session did not
        assert "LEAK CHECK FAILED" in report
        assert f"process {child_pid} (sleep 61) is still running" in report
        assert f"process {daemon_pid} (sleep 62) is still running" in report
        # Temp files go to the run's private TMPDIR, which the check names and removes.
        assert re.search(r"temporary folder \S+/ftpkit-tests-[^/]+/kept-\S+ is still there", report), report
        assert re.search(r"temporary file \S+/ftpkit-tests-[^/]+/stray-\S+ is still there", report), report
        private = re.search(r"(\S+/ftpkit-tests-[^/]+)/kept-", report).group(1)
        assert not Path(private).exists()
        if can_make_namespace:
            assert f"network namespace {namespace} is still there" in report
        # The check stopped the processes it proved were the run's own.
        assert wait_for(lambda: not is_running(child_pid, "sleep") and not is_running(daemon_pid, "sleep"))
    finally:
        if can_make_namespace:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        for name in ("child.pid", "daemon.pid"):
            path = tmp_path / name
            if path.exists() and is_running(int(path.read_text()), "sleep"):
                os.kill(int(path.read_text()), 9)


def test_a_failing_session_still_reports_its_leaks(tmp_path):
    result = run_inner_session(tmp_path, """
        import subprocess
        def test_fails():
            subprocess.Popen(["sleep", "63"])
            assert False
    """)
    assert result.returncode == 1
    assert "(sleep 63) is still running" in result.stdout


def test_dev_comparison_names_a_device_replaced_by_a_file(tmp_path):
    """The /dev comparison on a stand-in folder (the real /dev is never touched)."""
    dev = tmp_path / "dev"
    (dev / "pts").mkdir(parents=True)
    (dev / "net").mkdir()
    os.mkfifo(dev / "null")
    os.mkfifo(dev / "net" / "tun")
    (dev / "stdout").symlink_to("/proc/self/fd/1")
    before = snapshot_dev(dev)
    assert compare_dev(before, snapshot_dev(dev)) == []

    (dev / "pts" / "7").write_text("")               # dynamic folders change on their own
    assert compare_dev(before, snapshot_dev(dev)) == []

    (dev / "null").unlink()
    (dev / "null").write_text("overwritten")
    (dev / "net" / "tun").unlink()
    (dev / "nul").write_text("a typo")
    problems = compare_dev(before, snapshot_dev(dev))
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"{dev}/net/tun was removed (it was a FIFO")
    assert problems[1].startswith(f"{dev}/nul was created: a regular file")
    assert problems[2].startswith(f"{dev}/null changed: was a FIFO")
    assert "now a regular file" in problems[2]


def test_dev_snapshot_sees_device_numbers():
    devices = snapshot_dev()
    if "/dev/null" not in devices:
        pytest.skip("this machine has no /dev/null")
    assert devices["/dev/null"].kind == "character device"
    assert devices["/dev/null"].rdev == (1, 3)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="making a network namespace needs root and iproute2 (CI has both)")
def test_a_namespace_another_run_is_using_is_not_blamed(tmp_path):
    """A namespace made meanwhile by someone else, with their process in it, is theirs."""
    namespace = f"ftpkit-foreign-{os.getpid()}"
    ready = tmp_path / "ready"
    inner_started = tmp_path / "started"
    result_holder: dict = {}
    try:
        # The inner session waits until the other "run" (this test) has made its namespace.

        def other_run():
            assert wait_for(inner_started.exists, timeout=30)
            subprocess.run(["ip", "netns", "add", namespace], check=True)
            result_holder["occupant"] = subprocess.Popen(["ip", "netns", "exec", namespace, "sleep", "60"])
            ready.write_text("")

        thread = threading.Thread(target=other_run)
        thread.start()
        result = run_inner_session(tmp_path, f"""
            import os, time
            def test_waits_for_the_other_run():
                open({str(inner_started)!r}, "w").close()
                deadline = time.monotonic() + 30
                while not os.path.exists({str(ready)!r}) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert os.path.exists({str(ready)!r})
        """)
        thread.join()
        assert result.returncode == 0, result.stdout + result.stderr
        assert namespace not in result.stdout
    finally:
        occupant = result_holder.get("occupant")
        if occupant is not None:
            occupant.kill()
            occupant.wait()
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
