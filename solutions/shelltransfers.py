"""The shell's commands that move files: get, reget, mget, put and mput.

Each one is a few lines around a call to FtpClient (ftpclient.py), which
does the transfer and the check after it. What is left for the shell is
what the user sees: which local name a download gets, a progress bar for a
long transfer, the line that reports the bytes, the rate and the integrity
check, and what became of the file when Ctrl-C cut a transfer short.
The Shell (client.py) inherits these commands.
"""

from __future__ import annotations

import glob
import os
import shlex
import time
from contextlib import contextmanager

from .ftpclient import FtpError, TransferInterrupted, TransferResult, Verdict, mismatch_name
from .shelltext import describe_verdict, escaped, rate


class ShellTransfers:
    """Commands for Shell (which provides client, say, fail, quietly,
    interactive, stdout and failures)."""

    def do_get(self, arg: str) -> None:
        """get <remote> [local]: download a file, then check it against the server's."""
        remote, local = self._one_or_two(arg, "get <remote> [local]")
        if remote is None:
            return
        local = self._local_name_for(remote, local)
        if local is not None:
            self._get(remote, local)

    def _get(self, remote: str, local: str) -> None:
        # The size is asked for before the transfer: once RETR is sent, the
        # control channel is busy until the 226 reply.
        try:
            with self._progress_bar(lambda: self.client.size(remote)) as bar:
                result, verdict = self.client.get_checked(remote, local, progress=bar)
        except TransferInterrupted as stop:
            stop.note = "the partial file was removed"
            raise
        self._report(result, "received", verdict)
        if verdict.ok is False:
            self.say(f"{escaped(local)} left as it was; the download is kept as "
                     f"{escaped(mismatch_name(local))}")

    def do_reget(self, arg: str) -> None:
        """reget <remote> [local]: resume a download, appending to the local file (REST STREAM)."""
        remote, local = self._one_or_two(arg, "reget <remote> [local]")
        if remote is None:
            return
        local = self._local_name_for(remote, local)
        if local is None:
            return
        try:
            with self._progress_bar(lambda: self.client.size(remote)) as bar:
                result = self.client.resume(remote, local, progress=bar)
            verdict = self.client.verify_or_abort(local, remote, result)
        except TransferInterrupted as stop:
            stop.note = f"what arrived stays in {escaped(local)}: reget it to go on"
            raise
        self._report(result, "received", verdict)

    do_resume = do_reget

    def do_mget(self, arg: str) -> None:
        """mget <pattern>...: download every remote file matching the globs (NLST, then fnmatch)."""
        patterns = shlex.split(arg)
        if not patterns:
            self.fail("usage: mget <pattern>...")
            return
        for pattern in patterns:
            folder, _, glob_part = pattern.rpartition("/")
            names = self.client.names(folder, glob_part)
            if not names:
                self.fail(f"mget: {escaped(pattern)}: no remote file matches")
            for name in names:
                remote = name if "/" in name or not folder else f"{folder}/{name}"
                local = self._local_name_for(remote, None)
                if local is not None:
                    self._get(remote, local)

    def do_put(self, arg: str) -> None:
        """put <local> [remote]: upload a file, then check the server's copy."""
        local, remote = self._one_or_two(arg, "put <local> [remote]")
        if local is None:
            return
        if not os.path.isfile(local):
            self.fail(f"put: {local}: no such local file")
            return
        self._put(local, remote or os.path.basename(local))

    def _put(self, local: str, remote: str) -> None:
        with self._progress_bar(lambda: os.path.getsize(local)) as bar:
            result = self.client.put(local, remote, progress=bar)
        try:
            verdict = self.client.verify_or_abort(local, remote, result)
        except TransferInterrupted as stop:
            stop.note = "the upload stays on the server, unchecked"
            raise
        self._report(result, "sent", verdict)

    def do_mput(self, arg: str) -> None:
        """mput <pattern>...: upload every local file matching the globs."""
        patterns = shlex.split(arg)
        if not patterns:
            self.fail("usage: mput <pattern>...")
            return
        for pattern in patterns:
            files = sorted(path for path in glob.glob(pattern) if os.path.isfile(path))
            if not files:
                self.fail(f"mput: {pattern}: no local file matches")
            for path in files:
                self._put(path, os.path.basename(path))

    # --- helpers -----------------------------------------------------------------

    def _one_or_two(self, arg: str, usage: str):
        words = shlex.split(arg)
        if not 1 <= len(words) <= 2:
            self.fail(f"usage: {usage}")
            return None, None
        return words[0], words[1] if len(words) == 2 else None

    def _local_name_for(self, remote: str, local: str | None) -> str | None:
        """Where a download of ``remote`` goes: ``local`` if given, else the
        remote's last name part here. Into an existing folder it goes under
        the remote's name, as cp does. A remote path that names no file
        (``..``, ``dir/``) with no local name is refused in one line: there
        is no name to save it under, and guessing one could land the file
        in a parent folder."""
        name = remote.rsplit("/", 1)[-1]     # "dir/" names a folder: no file name
        if name in ("", ".", ".."):
            name = None
        if local is None:
            if name is None:
                self.fail(f"get: {escaped(remote)} does not name a file; give a local name: get <remote> <local>")
            return name
        if os.path.isdir(local):
            if name is None:
                self.fail(f"get: {local} is a folder and {escaped(remote)} does not name a file")
                return None
            return os.path.join(local, name)
        return local

    def _report(self, result: TransferResult, verb: str, verdict: Verdict) -> None:
        self.say(f"{result.bytes} bytes {verb} in {result.seconds:.3f} s ({rate(result.rate)})")
        self.client.record_end(result, verdict.name, verdict.local if verdict.method == "HASH" else None)
        self.say(describe_verdict(verdict))
        if verdict.ok is False:
            self.failures += 1

    @contextmanager
    def _progress_bar(self, size_of):
        """A progress callback for one transfer (or None): it shows a bar only
        on a terminal, and only once the transfer has taken over a second."""
        if not (self.interactive and hasattr(self.stdout, "isatty") and self.stdout.isatty()):
            yield None
            return
        try:
            with self.quietly():    # an error here is the transfer's to report, once
                total = size_of()
        except (FtpError, OSError, ValueError):
            total = None
        bar = _LazyProgress(total)
        try:
            yield bar
        finally:
            bar.finish()


class _LazyProgress:
    """The progress callback of one transfer: it counts the bytes, and draws
    a bar (rich's) only once the transfer has run for DELAY seconds."""

    DELAY = 1.0    # seconds before a bar appears: short transfers stay quiet

    def __init__(self, total: int | None):
        self.total = total
        self.started = time.monotonic()
        self.done = 0
        self.bar = None

    def __call__(self, n: int) -> None:
        self.done += n
        if self.bar is None:
            if time.monotonic() - self.started < self.DELAY:
                return
            # Imported only when a bar is first drawn: most transfers never need it.
            from rich.progress import (BarColumn, DownloadColumn, Progress, TimeRemainingColumn,
                                       TransferSpeedColumn)
            self.bar = Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("transfer", total=self.total)
        self.bar.update(self.task, completed=self.done)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.stop()
