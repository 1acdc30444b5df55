# ftpkit lab: starter code generated from the reference solution by
# `python -m solutions.generate`. Replace each `raise NotImplementedError(...)`
# with your code; lab/README.md says what each exercise asks for.
"""The commands that change or describe the tree of files, with no data connection.

MKD, RMD, DELE, RNFR/RNTO (RFC 959), MLST and MDTM (RFC 3659), MFMT and STAT:
each a few lines, because Root (filesystem.py) does the checking. Every
path goes through ``Root.resolve``, so these obey the same jail as RETR and
STOR: nothing outside the root, no dot files, no control characters. The
Session inherits them; conversation.py's verb table names them.
"""

from __future__ import annotations

import calendar
import os
import time

from .filesystem import PathRefused, Resolved, facts, timestamp
from .protocol import Code


class TreeCommands:
    """Handlers for Session (which provides reply, config, cwd, conversation...)."""

    def mkd(self, path: str) -> None:
        target = self.writable(path)
        try:
            # Try, rather than ask first whether the name is taken: between the
            # question and the mkdir another session could take it (rclone
            # makes one folder from several connections at once). The mkdir
            # itself is the one atomic check.
            target.real.mkdir()
        except FileExistsError:
            raise PathRefused(Code.FILE_UNAVAILABLE, f"{path}: already exists.") from None
        quoted = target.virtual.replace('"', '""')
        self.reply(Code.PATH_CREATED, f'"{quoted}" created.')

    def rmd(self, path: str) -> None:
        target = self.writable(path)
        if not target.real.is_dir() or target.real.is_symlink():
            raise PathRefused(Code.FILE_UNAVAILABLE, f"{path}: no such folder.")
        if any(os.scandir(target.real)):
            # Hidden files count: removing a folder must never remove them.
            raise PathRefused(Code.FILE_UNAVAILABLE, f"{path}: folder not empty.")
        target.real.rmdir()
        self.reply(Code.FILE_ACTION_OK, f"{path}: folder removed.")

    def dele(self, path: str) -> None:
        target = self.writable(path)
        if not target.real.is_file() and not target.real.is_symlink():
            raise PathRefused(Code.FILE_UNAVAILABLE, f"{path}: no such file.")
        target.real.unlink()                      # a link inside the root: the link goes, not its target
        self.reply(Code.FILE_ACTION_OK, f"{path}: deleted.")

    def rnfr(self, path: str) -> None:
        target = self.writable(path)
        if not target.real.exists() and not target.real.is_symlink():
            raise PathRefused(Code.FILE_UNAVAILABLE, f"{path}: no such file or folder.")
        self.rename_from = target
        self.reply(Code.PENDING, "Ready for RNTO.")           # 350: the conversation is RENAMING

    def rnto(self, path: str) -> None:
        source, self.rename_from = self.rename_from, None
        target = self.writable(path)
        if target.real.is_dir() and not source.real.is_dir():
            raise PathRefused(Code.NAME_NOT_ALLOWED, f"{path}: a folder of that name exists.")
        if source.real.is_dir() and _is_inside(target.virtual, source.virtual):
            raise PathRefused(Code.NAME_NOT_ALLOWED, f"{path}: cannot move a folder into itself.")
        os.replace(source.real, target.real)      # atomic: the old name or the new, never neither
        self.reply(Code.FILE_ACTION_OK, f"Renamed to {target.virtual}.")

    def writable(self, path: str) -> Resolved:
        """Resolve a path that a command will create, change or remove."""
        target = self.config.root.resolve(self.cwd, path)
        if target.virtual == "/":
            raise PathRefused(Code.FILE_UNAVAILABLE, "The root folder cannot be changed.")
        if not target.real.parent.is_dir():
            raise PathRefused(Code.FILE_UNAVAILABLE, f"{path}: no such folder.")
        return target

    def mlst(self, path: str) -> None:
        target = self.config.root.resolve(self.cwd, path or ".")
        if not target.real.exists():
            raise PathRefused(Code.FILE_UNAVAILABLE, f"{path}: no such file or folder.")
        line = f" {facts(target.real.stat(), not self.config.read_only)} {target.virtual}"
        self.reply(Code.FILE_ACTION_OK, f"Listing {target.virtual}\n{line}\nEnd.")

    def mdtm(self, path: str) -> None:
        target = self.config.root.resolve(self.cwd, path)
        if not target.real.is_file():
            raise PathRefused(Code.FILE_UNAVAILABLE, f"{path}: no such file.")
        self.reply(Code.FILE_STATUS, timestamp(target.real.stat().st_mtime))

    def mfmt(self, arg: str) -> None:
        """draft-somers-ftp-mfxx: ``MFMT 20261203123456 path`` sets the modification
        time (UTC), as ``touch`` would; rclone and lftp keep timestamps with it."""
        when, _, path = arg.partition(" ")
        try:
            mtime = calendar.timegm(time.strptime(when, "%Y%m%d%H%M%S"))
        except ValueError:
            raise PathRefused(Code.BAD_ARGUMENTS, "MFMT needs YYYYMMDDHHMMSS and a path.") from None
        target = self.writable(path)
        if not target.real.exists():
            raise PathRefused(Code.FILE_UNAVAILABLE, f"{path}: no such file or folder.")
        os.utime(target.real, (target.real.stat().st_atime, mtime))
        self.reply(Code.FILE_STATUS, f"Modify={when}; {path}")

    def stat(self, path: str) -> None:
        if path:
            # RFC 959: with an argument, a listing sent on the control connection.
            listing = self.config.root.listing(self.cwd, path, names_only=False)
            lines = listing.decode("utf-8", "replace").splitlines()
            self.reply(Code.FILE_STATUS, "\n".join([f"Status of {path}:", *lines, "End of status."]))
            return
        state = self.conversation.state.value
        mode = "read-only" if self.config.read_only else "read-write"
        self.reply(Code.SYSTEM_STATUS, "\n".join([
            "ftpkit server status:", f" Connected from {self.client_host}",
            f" Logged in as {self.user}", f" Current folder {self.cwd} ({mode})",
            f" Session state: {state}", "End of status."]))


def _is_inside(path: str, folder: str) -> bool:
    """Is virtual ``path`` the folder itself or somewhere below it?"""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


