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
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .protocol import Code

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
            raise PathRefused(Code.BAD_ARGUMENTS, "File names cannot contain NUL.")
        if "\\" in name:
            # On Windows a backslash is a separator; refuse it everywhere so
            # the same path means the same thing on every server.
            raise PathRefused(Code.NAME_NOT_ALLOWED, "File names cannot contain backslashes.")
        if any(len(part.encode("utf-8")) > NAME_MAX for part in name.split("/")):
            raise PathRefused(Code.NAME_NOT_ALLOWED, f"File name too long (the limit is {NAME_MAX} bytes).")
        if any(_is_control(char) for char in name):
            # ESC, CR, TAB...: a name holding them would be echoed into every
            # other user's listing and terminal.
            raise PathRefused(Code.NAME_NOT_ALLOWED, "File names cannot contain control characters.")
        if any(part.startswith(".") and part not in (".", "..") for part in name.split("/")):
            # Dot files (.bashrc, .ssh, and uploads in progress) are private
            # to whoever owns the folder: never served, listed or written.
            raise PathRefused(Code.NAME_NOT_ALLOWED, "Names starting with '.' are not served.")
        ### BEGIN SOLUTION ex3: normalise the virtual path; refuse ".." past "/" and links that lead out
        parts: list[str] = []
        for part in posixpath.join(cwd, name).split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    raise PathRefused(Code.FILE_UNAVAILABLE, "Permission denied: outside the root.")
                parts.pop()
            else:
                parts.append(part)
        virtual = "/" + "/".join(parts)
        real = self.directory.joinpath(*parts)
        # A symbolic link inside the root may point outside it: check where the
        # path really leads, as far as it exists.
        if not _is_within(Path(os.path.realpath(real)), self.directory):
            raise PathRefused(Code.FILE_UNAVAILABLE, "Permission denied: outside the root.")
        return Resolved(virtual, real)
        ### END SOLUTION

    def listing(self, cwd: str, name: str, names_only: bool) -> bytes:
        """The LIST (``ls -l`` style) or NLST (names only) text, CRLF-terminated lines."""
        target = self.resolve(cwd, name)
        if target.real.is_dir():
            names = [(e.name, e) for e in self.entries(target.real)]
        elif target.real.exists():
            names = [(target.real.name, None)]
        else:
            raise PathRefused(Code.FILE_UNAVAILABLE, "No such file or directory.")
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

    def entries(self, directory: Path) -> list[os.DirEntry]:
        """What a listing of ``directory`` shows, sorted by name.

        Dot files stay hidden, as with ls (and uploads in progress are dot
        files), and so do links that lead out of the root, and names holding
        control characters, which would drive the terminal of whoever reads
        the listing: a listing shows nothing a client could not fetch.
        """
        return sorted((e for e in os.scandir(directory)
                       if not e.name.startswith(".") and not self._leads_out(e)
                       and not any(_is_control(char) for char in e.name)),
                      key=lambda e: e.name)

    def machine_listing(self, cwd: str, name: str, writable: bool) -> bytes:
        """MLSD (RFC 3659 section 7): one ``facts; name`` line per entry of a folder."""
        target = self.resolve(cwd, name)
        if not target.real.is_dir():
            raise PathRefused(Code.BAD_ARGUMENTS if target.real.exists() else Code.FILE_UNAVAILABLE, "Not a folder.")
        lines = []
        for entry in self.entries(target.real):
            try:
                lines.append(f"{facts(entry.stat(), writable)} {entry.name}\r\n")
            except OSError:
                continue                      # deleted meanwhile, or a dangling link
        return "".join(lines).encode("utf-8", "surrogateescape")

    def remove_stale_uploads(self) -> list[Path]:
        """Delete the ``.NAME.xxxxxxxx.part`` files of uploads that never finished.

        A server stopped mid-upload (SIGINT, SIGKILL, a power cut) had no
        chance to delete its partial file. They are hidden from listings, so
        nobody else would ever notice them, and they would stay forever. Call
        this at start, before any session can begin an upload of its own.
        """
        removed = []
        for folder, subfolders, files in os.walk(self.directory):   # links are not followed
            for name in files:
                if STALE_UPLOAD.fullmatch(name):
                    path = Path(folder, name)
                    try:
                        path.unlink()
                    except OSError:
                        continue
                    removed.append(path)
        return removed

    def _leads_out(self, entry: os.DirEntry) -> bool:
        """Is this directory entry a symbolic link to somewhere outside the root?"""
        return entry.is_symlink() and not _is_within(Path(os.path.realpath(entry.path)), self.directory)


# The name helper.PartialFile gives a file while it is being received.
STALE_UPLOAD = re.compile(r"\..+\.[0-9a-f]{8}\.part", re.DOTALL)


def _is_control(char: str) -> bool:
    """C0 controls, DEL, and C1 controls (U+0080-U+009F: U+009B is the one-byte
    CSI some terminals obey just like ESC [)."""
    return char < " " or "\x7f" <= char <= "\x9f"


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def timestamp(mtime: float) -> str:
    """RFC 3659's time-val, always UTC: ``20261203123456`` (MDTM, MLSD's modify)."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(mtime))


def facts(info: os.stat_result, writable: bool) -> str:
    """The MLSD/MLST facts of one entry: ``type=file;size=12;modify=...;perm=r;``.

    perm (RFC 3659 section 7.5.5) tells a client what it may do: for a file
    r(etrieve), and if writable a(ppend), w(rite), d(elete), f (rename); for
    a folder e(nter), l(ist), and if writable c(reate files), m(ake
    folders), p(urge entries), d(elete), f (rename).
    """
    if stat.S_ISDIR(info.st_mode):
        kind, perm = "dir", "el" + ("cmpdf" if writable else "")
    else:
        kind, perm = "file", "r" + ("awdf" if writable else "")
    return f"type={kind};size={info.st_size};modify={timestamp(info.st_mtime)};perm={perm};"


def _long_format(name: str, info: os.stat_result) -> str:
    """One line as ``ls -l`` prints it, which every FTP client knows how to parse."""
    mtime = time.gmtime(info.st_mtime)
    month = MONTHS[mtime.tm_mon - 1]
    recent = abs(time.time() - info.st_mtime) < SIX_MONTHS
    when = f"{mtime.tm_hour:02d}:{mtime.tm_min:02d}" if recent else f" {mtime.tm_year}"
    mode = stat.filemode(info.st_mode)
    return f"{mode} 1 ftp ftp {info.st_size:>12} {month} {mtime.tm_mday:>2} {when} {name}"
