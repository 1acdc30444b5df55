"""Load: many clients at once, each putting, getting and listing random
files with hash verification; nothing may fail, nothing may be lost or
damaged, and the server's threads and descriptors must come back to where
they started.

This is the benchmark's load run (bench/bench_ftp.py, 100 clients) made
small enough for the test suite.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.bench_ftp import run_load, start_ours

CLIENTS = 20


@pytest.fixture
def load_server(server_root, tmp_path):
    if not Path("/proc/self/status").exists():
        pytest.skip("counting threads and descriptors needs Linux's /proc")
    with start_ours(server_root, tmp_path) as server:
        yield server


@pytest.mark.timeout(120)
def test_clients_at_once_lose_nothing_and_leave_nothing_behind(load_server, server_root, tmp_path):
    clients_dir = tmp_path / "clients"
    clients_dir.mkdir()
    report = run_load(load_server.address, load_server.process.pid, server_root, clients_dir,
                      clients=CLIENTS, files_per_client=2, max_size=512 * 1024)
    print(f"\nload: {report.clients} clients, {report.operations} transfers, "
          f"{report.bytes_moved / 2**20:.0f} MiB in {report.seconds:.1f} s; "
          f"{len(report.failures)} failed, {len(report.lost)} lost, {len(report.corrupt)} corrupt; "
          f"server threads/fds {report.counts_before} before, {report.counts_after} after")
    assert report.failures == []
    assert report.lost == [] and report.corrupt == []
    assert report.operations == CLIENTS * (2 * 2 + 2)       # 2 puts + 2 gets, 1 shared get + 1 ls
    assert report.counts_after == report.counts_before
    # Every uploaded file is there, whole (checked by run_load), and nothing else is.
    uploaded = sorted(p.name for p in server_root.iterdir() if re.fullmatch(r"c\d+-f\d\.bin", p.name))
    assert len(uploaded) == CLIENTS * 2
    assert not [p for p in server_root.iterdir() if p.name.startswith(".")]
    assert "aborted" not in load_server.stderr()
