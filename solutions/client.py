"""The file-transfer client: a small shell in the style of the classic ``ftp``.

Run it from the repository root, either way::

    python -m solutions.client 127.0.0.1 2121
    python solutions/client.py 127.0.0.1 2121     # as the original project ran it

At the ``ftp>`` prompt: ``put <local> [remote]``, ``get <remote> [local]``,
``reget``, ``mget``/``mput`` with globs, ``ls [path]``, ``cd``, ``lcd``,
``pwd``, ``mkdir``, ``rmdir``, ``delete``, ``rename``, ``size``, ``modtime``,
``passive``, ``verbose``, ``quit`` and ``help``. Ctrl-C during a transfer
aborts it (ABOR) and returns to the prompt. When standard input is not a
terminal the client runs the commands it reads and exits with status 1 if
any of them failed::

    printf 'put a.bin\\nget b.bin\\nls\\nquit\\n' | python -m solutions.client 127.0.0.1 2121

This module is the shell itself: its loop (one command at a time, a
failure reported and the session going on), the commands that are a line
or two, and ``main``. The commands that move files are in shelltransfers.py,
the words it prints in shelltext.py; the protocol is FtpClient's
(ftpclient.py), which has no user interface of its own.
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
from contextlib import contextmanager

import trace

from .ftpclient import ConnectionLost, FtpClient, FtpError, TransferInterrupted
from .protocol import Reply
from .shelltext import describe_interruption, escaped
from .shelltransfers import ShellTransfers


class Shell(ShellTransfers, cmd.Cmd):
    """The ``ftp>`` prompt: one line, one command, on one FtpClient.

    The commands that move files (get, reget, mget, put, mput) are inherited
    from ShellTransfers; the rest are here, each a line or two."""

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

    def _need_one(self, arg: str, usage: str) -> bool:
        if not arg.strip():
            self.fail(f"usage: {usage}")
            return False
        return True


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
