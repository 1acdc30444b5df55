# ftpkit lab: starter code generated from the reference solution by
# `python -m solutions.generate`. Replace each `raise NotImplementedError(...)`
# with your code; lab/README.md says what each exercise asks for.
"""The file-transfer client: a small shell in the style of the classic ``ftp``.

Run it from the repository root, either way::

    python -m lab.client 127.0.0.1 2121
    python lab/client.py 127.0.0.1 2121     # as the original project ran it

At the ``ftp>`` prompt: ``put <local> [remote]``, ``get <remote> [local]``,
``reget``, ``mget``/``mput`` with globs, ``ls [path]``, ``cd``, ``lcd``,
``pwd``, ``mkdir``, ``rmdir``, ``delete``, ``rename``, ``size``, ``modtime``,
``passive``, ``verbose``, ``quit`` and ``help``. Ctrl-C during a transfer
aborts it (ABOR) and returns to the prompt. When standard input is not a
terminal the client runs the commands it reads and exits with status 1 if
any of them failed::

    printf 'put a.bin\\nget b.bin\\nls\\nquit\\n' | python -m lab.client 127.0.0.1 2121
"""

from __future__ import annotations

import sys

if not __package__:
    # Started as a script: put the repository root first on sys.path, so the
    # kit's `trace` package wins over the standard library module.
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "lab"

import argparse
import cmd
import glob
import os
import shlex
import time
from contextlib import contextmanager

import trace

from .ftpclient import (ConnectionLost, FtpClient, FtpError, TransferInterrupted, TransferResult,
                        Verdict, mismatch_name)
from .protocol import Reply
from .shelltext import describe_interruption, describe_verdict, escaped, rate


class Shell(cmd.Cmd):
    prompt = "ftp> "
    intro = None

    def __init__(self, client: FtpClient, interactive: bool, stdin=None, stdout=None):
        super().__init__(stdin=stdin, stdout=stdout)
        self.client = client
        self.interactive = interactive
        self.use_rawinput = interactive and stdin is None
        if not interactive:
            self.prompt = ""       # precmd echoes each command instead
        self.verbose = True
        self.quiet = False
        self.interrupted = False     # Ctrl-C cut a command short: replies may be owed
        self.failures = 0
        self.lost = False
        client.on_reply = self.show_reply

    # --- output --------------------------------------------------------------

    def say(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)

    def show_reply(self, reply: Reply) -> None:
        if self.quiet:
            return
        if self.verbose or reply.is_error:
            self.say(escaped("\n".join(reply.lines) if len(reply.lines) > 1 else f"{reply.code} {reply.text}"))

    def show_listing(self, text: str) -> None:
        self.stdout.write(escaped(text.replace("\r\n", "\n")))
        self.stdout.flush()

    @contextmanager
    def quietly(self):
        """Run a command whose replies the user did not ask for (the size
        for a progress bar) without printing them."""
        self.quiet = True
        try:
            yield
        finally:
            self.quiet = False

    def fail(self, message: str) -> None:
        self.failures += 1
        self.say(message)

    # --- the command loop ------------------------------------------------------

    def precmd(self, line: str) -> str:
        if not self.interactive and line.strip():
            self.say(f"ftp> {line.rstrip()}")   # make the transcript readable
        return line

    def onecmd(self, line: str) -> bool:
        """Run one command; a server error is reported and the shell goes on."""
        try:
            if self.interrupted:
                # The last command was cut short by Ctrl-C: first read the
                # replies the server still owes it.
                self.interrupted = False
                self.client.catch_up()
            return super().onecmd(line)
        except FtpError:
            self.failures += 1     # the reply itself was already printed
        except ConnectionLost as lost:
            self.fail(f"connection lost: {escaped(str(lost))}")
            self.lost = True
            return True
        except TransferInterrupted as stop:
            self.failures += 1
            self.interrupted = True
            self.say(describe_interruption(stop))
        except KeyboardInterrupt:
            self.interrupted = True
            # Ctrl-C outside a transfer (waiting for a reply, hashing a
            # file): the command is dropped, any reply still owed is read
            # before the next command, and the shell goes on, as ftp does.
            self.failures += 1
            self.say("\ninterrupted")
        except (OSError, ValueError) as err:
            self.fail(f"error: {escaped(str(err))}")
        return False

    def emptyline(self) -> bool:
        return False                 # an empty line does nothing (not "repeat")

    def default(self, line: str) -> None:
        self.fail(f"?Invalid command: {line.split()[0]}  (try 'help')")

    # --- commands ----------------------------------------------------------------

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

    def do_ls(self, arg: str) -> None:
        """ls [path]: list files on the server (LIST)."""
        self.show_listing(self.client.listing(arg.strip()))

    do_dir = do_ls

    def do_nlist(self, arg: str) -> None:
        """nlist [path]: list names only (NLST)."""
        self.show_listing(self.client.listing(arg.strip(), names_only=True))

    def do_mkdir(self, arg: str) -> None:
        """mkdir <directory>: make a folder on the server (MKD)."""
        if self._need_one(arg, "mkdir <directory>"):
            self.client.mkdir(arg.strip())

    def do_rmdir(self, arg: str) -> None:
        """rmdir <directory>: remove an empty folder on the server (RMD)."""
        if self._need_one(arg, "rmdir <directory>"):
            self.client.rmdir(arg.strip())

    def do_delete(self, arg: str) -> None:
        """delete <remote>: delete a file on the server (DELE)."""
        if self._need_one(arg, "delete <remote>"):
            self.client.delete(arg.strip())

    def do_rename(self, arg: str) -> None:
        """rename <from> <to>: rename a file on the server (RNFR, RNTO)."""
        words = shlex.split(arg)
        if len(words) != 2:
            self.fail("usage: rename <from> <to>")
            return
        self.client.rename(*words)

    def do_modtime(self, arg: str) -> None:
        """modtime <remote>: when a file on the server was last changed (MDTM, UTC)."""
        if self._need_one(arg, "modtime <remote>"):
            stamp = self.client.mtime(arg.strip())
            if len(stamp) >= 14 and stamp[:14].isdigit():
                stamp = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[8:10]}:{stamp[10:12]}:{stamp[12:14]} UTC"
            self.say(f"{escaped(arg.strip())}\t{escaped(stamp)}")

    def do_lcd(self, arg: str) -> None:
        """lcd [directory]: change the local working directory (home if none)."""
        os.chdir(os.path.expanduser(arg.strip() or "~"))
        self.say(f"Local directory now {os.getcwd()}")

    def do_cd(self, arg: str) -> None:
        """cd <directory>: change the server's working directory."""
        self.client.expect("CWD", arg.strip())

    def do_pwd(self, arg: str) -> None:
        """pwd: print the server's working directory."""
        self.client.expect("PWD")

    def do_size(self, arg: str) -> None:
        """size <remote>: the size of a file on the server."""
        if self._need_one(arg, "size <remote>"):
            self.say(f"{escaped(arg.strip())}\t{self.client.size(arg.strip())}")

    def do_passive(self, arg: str) -> None:
        """passive: toggle passive mode (server listens) and active mode (client listens)."""
        self.client.passive = not self.client.passive
        self.say(f"Passive mode {'on' if self.client.passive else 'off'}.")

    def do_verbose(self, arg: str) -> None:
        """verbose: toggle showing every server reply."""
        self.verbose = not self.verbose
        self.say(f"Verbose mode {'on' if self.verbose else 'off'}.")

    def do_quit(self, arg: str) -> bool:
        """quit: end the session (the server answers 221) and exit."""
        self.client.quit()
        return True

    do_bye = do_exit = do_quit

    def do_EOF(self, arg: str) -> bool:
        if self.interactive:
            self.say("")
        return self.do_quit(arg)

    # --- helpers -----------------------------------------------------------------

    def _one_or_two(self, arg: str, usage: str):
        words = shlex.split(arg)
        if not 1 <= len(words) <= 2:
            self.fail(f"usage: {usage}")
            return None, None
        return words[0], words[1] if len(words) == 2 else None

    def _need_one(self, arg: str, usage: str) -> bool:
        if not arg.strip():
            self.fail(f"usage: {usage}")
            return False
        return True

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


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="client", description="Two-channel file-transfer (FTP) client.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--trace", metavar="FILE", help="append trace events (JSON Lines) to FILE")
    parser.add_argument("--active", action="store_true", help="start in active mode (PORT/EPRT)")
    parser.add_argument("--user", default="anonymous")
    parser.add_argument("--password", default="anonymous@")
    parser.add_argument("--timeout", type=float, default=30.0)
    return parser.parse_args(argv)


def main(argv=None, stdin=None, stdout=None) -> int:
    args = parse_args(argv)
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    interactive = stdin.isatty()
    if args.trace:
        trace.start(args.trace, "client")
    client = FtpClient(args.host, args.port, passive=not args.active, timeout=args.timeout)
    shell = Shell(client, interactive, stdin=None if stdin is sys.stdin else stdin, stdout=stdout)
    try:
        try:
            client.connect()
            client.login(args.user, args.password)
        except OSError as err:
            print(f"client: cannot connect to {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
            return 2
        except (FtpError, ConnectionLost) as err:
            print(f"client: login failed: {escaped(str(err))}", file=sys.stderr)
            return 2
        while True:
            try:
                shell.cmdloop()
                break
            except KeyboardInterrupt:
                # Ctrl-C at the prompt: a fresh prompt, as ftp and the shells
                # do (quit or Ctrl-D ends the session).
                shell.say("")
        return 1 if shell.failures else 0
    finally:
        client.close()
        trace.stop()


if __name__ == "__main__":
    sys.exit(main())
