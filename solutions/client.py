"""The file-transfer client: a small shell in the style of the classic ``ftp``.

Run it from the repository root, either way::

    python -m solutions.client 127.0.0.1 2121
    python solutions/client.py 127.0.0.1 2121     # as the original project ran it

At the ``ftp>`` prompt: ``put <local> [remote]``, ``get <remote> [local]``,
``ls [path]``, ``cd``, ``pwd``, ``size``, ``passive``, ``verbose``, ``quit``
and ``help``. When standard input is not a terminal the client runs the
commands it reads and exits with status 1 if any of them failed::

    printf 'put a.bin\\nget b.bin\\nls\\nquit\\n' | python -m solutions.client 127.0.0.1 2121
"""

from __future__ import annotations

import sys

if not __package__:
    # Started as a script: put the repository root first on sys.path, so the
    # kit's `trace` package wins over the standard library module.
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "solutions"

import argparse
import cmd
import os
import shlex
import time
from contextlib import contextmanager

import trace

from .ftpclient import ConnectionLost, FtpClient, FtpError, TransferResult, Verdict
from .protocol import Reply


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
        self.failures = 0
        self.lost = False
        client.on_reply = self.show_reply

    # --- output --------------------------------------------------------------

    def say(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)

    def show_reply(self, reply: Reply) -> None:
        if self.verbose or reply.is_error:
            self.say("\n".join(reply.lines) if len(reply.lines) > 1 else f"{reply.code} {reply.text}")

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
            return super().onecmd(line)
        except FtpError:
            self.failures += 1     # the reply itself was already printed
        except ConnectionLost as lost:
            self.fail(f"connection lost: {lost}")
            self.lost = True
            return True
        except (OSError, ValueError) as err:
            self.fail(f"error: {err}")
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
        local = local or os.path.basename(remote)
        # The size is asked for before the transfer: once RETR is sent, the
        # control channel is busy until the 226 reply.
        with self._progress_bar(lambda: self.client.size(remote)) as bar:
            result = self.client.get(remote, local, progress=bar)
        self._report(result, "received", local, remote)

    def do_put(self, arg: str) -> None:
        """put <local> [remote]: upload a file, then check the server's copy."""
        local, remote = self._one_or_two(arg, "put <local> [remote]")
        if local is None:
            return
        if not os.path.isfile(local):
            self.fail(f"put: {local}: no such local file")
            return
        remote = remote or os.path.basename(local)
        with self._progress_bar(lambda: os.path.getsize(local)) as bar:
            result = self.client.put(local, remote, progress=bar)
        self._report(result, "sent", local, remote)

    def do_ls(self, arg: str) -> None:
        """ls [path]: list files on the server (LIST)."""
        self.stdout.write(self.client.listing(arg.strip()))
        self.stdout.flush()

    do_dir = do_ls

    def do_nlist(self, arg: str) -> None:
        """nlist [path]: list names only (NLST)."""
        self.stdout.write(self.client.listing(arg.strip(), names_only=True))
        self.stdout.flush()

    def do_cd(self, arg: str) -> None:
        """cd <directory>: change the server's working directory."""
        self.client.expect("CWD", arg.strip())

    def do_pwd(self, arg: str) -> None:
        """pwd: print the server's working directory."""
        self.client.expect("PWD")

    def do_size(self, arg: str) -> None:
        """size <remote>: the size of a file on the server."""
        self.say(str(self.client.size(arg.strip())))

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

    def _report(self, result: TransferResult, verb: str, local: str, remote: str) -> None:
        self.say(f"{result.bytes} bytes {verb} in {result.seconds:.3f} s ({_rate(result.rate)})")
        verdict = self.client.verify(local, remote)
        self.client.record_end(result, verdict.name, verdict.local if verdict.method == "HASH" else None)
        self.say(_describe(verdict))
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


def _rate(bytes_per_second: float) -> str:
    for unit in ("B/s", "KiB/s", "MiB/s", "GiB/s"):
        if bytes_per_second < 1024 or unit == "GiB/s":
            return f"{bytes_per_second:.1f} {unit}"
        bytes_per_second /= 1024


def _describe(verdict: Verdict) -> str:
    if verdict.method == "HASH":
        if verdict.ok:
            return f"integrity: SHA-256 matches the server's ({verdict.local[:16]}…)"
        return f"integrity: SHA-256 MISMATCH: local {verdict.local[:16]}…, server {verdict.remote[:16]}…"
    if verdict.method == "SIZE":
        if verdict.ok:
            return f"integrity: size matches the server's ({verdict.local} bytes; no HASH to compare contents)"
        return f"integrity: size MISMATCH: local {verdict.local} bytes, server {verdict.remote}"
    return f"integrity: not checked (the server offers neither HASH nor SIZE) {verdict.remote}".rstrip()


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
            print(f"client: login failed: {err}", file=sys.stderr)
            return 2
        try:
            shell.cmdloop()
        except KeyboardInterrupt:
            shell.say("")
            client.close()
        return 1 if shell.failures else 0
    finally:
        client.close()
        trace.stop()


if __name__ == "__main__":
    sys.exit(main())
