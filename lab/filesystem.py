# ftpkit lab: starter code generated from the reference solution by
# `python -m solutions.generate`. Replace each `raise NotImplementedError(...)`
# with your code; lab/README.md says what each exercise asks for.
"""The server's view of the disk: one directory, and nothing outside it.

Clients name files by *virtual* paths: ``/`` is the server's root directory
and ``/docs/a.txt`` is ``<root>/docs/a.txt``. Every path a client sends
passes through :meth:`Root.resolve`, which refuses anything that would lead
outside the root: ``..`` past the top, and symbolic links that point out.
That single choke point is what keeps ``RETR ../../etc/passwd`` harmless.
"""

from __future__ import annotations

import os
import posixpath
import stat
import time
from dataclasses import dataclass
from pathlib import Path

# The longest name of one file or directory most file systems allow, in
# bytes (NAME_MAX on Linux, ext4, NTFS, APFS). A longer one could never be
# created or found; refusing it up front gives a clear 553 instead of an
# OSError from deep inside.
NAME_MAX = 255

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
SIX_MONTHS = 182 * 24 * 3600


class PathRefused(Exception):
    """The path is not acceptable; ``code`` is the reply to send (550, 501, 553)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Resolved:
    virtual: str     # normalised path the client sees, e.g. "/docs/a.txt"
    real: Path       # where it is on disk, always inside the root


class Root:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory).resolve()
        if not self.directory.is_dir():
            raise NotADirectoryError(f"{directory}: not a directory")

    def resolve(self, cwd: str, name: str) -> Resolved:
        """Turn a client's path (relative to ``cwd``, or absolute) into a real one."""
        if "\0" in name:
            raise PathRefused(501, "File names cannot contain NUL.")
        if "\\" in name:
            # On Windows a backslash is a separator; refuse it everywhere so
            # the same path means the same thing on every server.
            raise PathRefused(553, "File names cannot contain backslashes.")
        if any(len(part.encode("utf-8")) > NAME_MAX for part in name.split("/")):
            raise PathRefused(553, f"File name too long (the limit is {NAME_MAX} bytes).")
        raise NotImplementedError('ex3: normalise the virtual path; refuse ".." past "/" and links that lead out')

    def listing(self, cwd: str, name: str, names_only: bool) -> bytes:
        """The LIST (``ls -l`` style) or NLST (names only) text, CRLF-terminated lines."""
        target = self.resolve(cwd, name)
        if target.real.is_dir():
            # Dot files stay hidden, as with ls (and uploads in progress are dot
            # files), and so do links that lead out of the root: a listing shows
            # nothing a client could not fetch.
            entries = sorted((e for e in os.scandir(target.real)
                              if not e.name.startswith(".") and not self._leads_out(e)),
                             key=lambda e: e.name)
            names = [(e.name, e) for e in entries]
        elif target.real.exists():
            names = [(target.real.name, None)]
        else:
            raise PathRefused(550, "No such file or directory.")
        lines = []
        for entry_name, entry in names:
            if names_only:
                lines.append(entry_name)
                continue
            try:
                info = entry.stat() if entry is not None else target.real.stat()
            except OSError:
                continue          # a dangling link or a file deleted meanwhile
            lines.append(_long_format(entry_name, info))
        # A name on disk that is not UTF-8 goes out as the bytes it is, as
        # with ls and vsftpd ("surrogateescape" turns them back into bytes).
        return "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogateescape")

    def _leads_out(self, entry: os.DirEntry) -> bool:
        """Is this directory entry a symbolic link to somewhere outside the root?"""
        return entry.is_symlink() and not _is_within(Path(os.path.realpath(entry.path)), self.directory)


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _long_format(name: str, info: os.stat_result) -> str:
    """One line as ``ls -l`` prints it, which every FTP client knows how to parse."""
    mtime = time.gmtime(info.st_mtime)
    month = MONTHS[mtime.tm_mon - 1]
    recent = abs(time.time() - info.st_mtime) < SIX_MONTHS
    when = f"{mtime.tm_hour:02d}:{mtime.tm_min:02d}" if recent else f" {mtime.tm_year}"
    mode = stat.filemode(info.st_mode)
    return f"{mode} 1 ftp ftp {info.st_size:>12} {month} {mtime.tm_mday:>2} {when} {name}"
