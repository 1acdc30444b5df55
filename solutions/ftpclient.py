"""The client's side of the protocol: files moved, listings fetched, copies checked.

This module has no user interface; ``client.py`` puts a shell on top of it.
FtpClient is built on ControlChannel (clientcontrol.py), which sends the
commands and reads the replies. Every transfer follows the same steps,
which is the lesson of the whole design:

1. agree on a data connection over the control channel (PASV/EPSV or PORT/EPRT);
2. send the transfer command (RETR, STOR, LIST, NLST);
3. open the data connection, move the bytes, close it;
4. read the final reply (226) on the control channel, which stayed open.
"""

from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import dataclass
from typing import Callable

import trace

from . import helper
# FtpClient raises FtpError and ConnectionLost too: programs import them from here.
from .clientcontrol import ConnectionLost, ControlChannel, FtpError
from .datachannel import ConnectingEnd, ListeningEnd
from .protocol import (Reply, format_eprt_arg, format_host_port, parse_epsv_reply, parse_hash_reply,
                       parse_pasv_reply)


class TransferInterrupted(KeyboardInterrupt):
    """The user pressed Ctrl-C during a transfer; it was aborted (ABOR).

    Still a KeyboardInterrupt, so a program that does not look for it stops
    as it would have; the shell catches it and reports what was moved."""

    def __init__(self, command: str, path: str, moved: int, replies: list[Reply]):
        super().__init__(f"{command} {path} interrupted after {moved} bytes")
        self.command, self.path, self.moved, self.replies = command, path, moved, replies
        self.note = ""          # what became of the local file, for the user


class _ByteMeter:
    """A progress callback that also counts: a transfer cut short (Ctrl-C, a
    reset) still knows how many bytes it moved."""

    def __init__(self, progress: Callable[[int], None] | None):
        self.progress = progress
        self.count = 0

    def __call__(self, n: int) -> None:
        self.count += n
        if self.progress is not None:
            self.progress(n)


@dataclass
class TransferResult:
    command: str
    path: str
    direction: str                   # "download", "upload" or "listing"
    bytes: int
    seconds: float
    replies: list[Reply]
    data_conn: int | None = None     # the data connection's trace id, if traced

    @property
    def rate(self) -> float:
        """Bytes per second."""
        return self.bytes / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class Verdict:
    """What the integrity check after a transfer found."""
    method: str            # "HASH", "SIZE" or "none"
    ok: bool | None        # None: could not check
    local: str
    remote: str

    @property
    def name(self) -> str:
        return {True: "verified", False: "mismatch", None: "unverified"}[self.ok]


class FtpClient(ControlChannel):
    def __init__(self, host: str, port: int, passive: bool = True, timeout: float = 30.0,
                 on_reply: Callable[[Reply], None] | None = None):
        super().__init__(host, port, timeout, on_reply)
        self.passive = passive          # PASV/EPSV (the server listens), else PORT/EPRT

    # --- data connections --------------------------------------------------------

    def prepare_data_channel(self):
        """Agree on the next data connection; returns the end this side will open.

        IPv4 uses the classic PASV and PORT (their replies show the address
        as six numbers); IPv6 needs the extended EPSV and EPRT of RFC 2428.
        """
        local_host = self.control.getsockname()[0]
        ipv6 = ":" in local_host
        if self.passive:
            ### BEGIN SOLUTION ex2: PASV (or EPSV for IPv6); connect to the announced address
            if ipv6:
                port = parse_epsv_reply(self.expect("EPSV").text)
                return ConnectingEnd((self.host, port), transfer_timeout=self.timeout)
            _, port = parse_pasv_reply(self.expect("PASV").text)
            # Connect to the host we already talk to, not to the address in the
            # reply: a server behind NAT announces an address we cannot reach,
            # and a hostile one could name a third host (curl and ftplib agree).
            return ConnectingEnd((self.host, port), transfer_timeout=self.timeout)
            ### END SOLUTION
        ### BEGIN SOLUTION ex6: listen on the control connection's local address (accept only the server); announce it with PORT/EPRT
        # Accept the data connection only from the server we talk to: anyone
        # else who connects first would receive our file (RFC 2577).
        end = ListeningEnd(local_host, accept_timeout=self.timeout, transfer_timeout=self.timeout,
                           allowed_peer=self.control.getpeername()[0])
        try:
            host, port = end.address
            if ipv6:
                self.expect("EPRT", format_eprt_arg(host, port))
            else:
                self.expect("PORT", format_host_port(host, port))
        except BaseException:
            end.close()
            raise
        return end
        ### END SOLUTION

    def transfer(self, verb: str, arg: str, move_bytes: Callable, direction: str,
                 meter: _ByteMeter | None = None) -> TransferResult:
        """Run one transfer command with its own data connection (steps 1-4 above).

        ``meter``, if given, is the progress callback ``move_bytes`` uses: it
        tells how far a transfer got when it was cut short. Ctrl-C aborts
        the transfer (ABOR) and raises TransferInterrupted.
        """
        replies = []
        data_end = self.prepare_data_channel()
        started = time.monotonic()
        trace.event("transfer_start", command=verb, path=arg or ".", direction=direction,
                    control=getattr(self.control, "conn", None))
        data = None
        moved = 0
        try:
            ### BEGIN SOLUTION ex3: passive: connect first; send the command, expect 1xx; active: accept; move bytes; close; expect 226
            if not data_end.waits_for_peer:
                data = data_end.open()      # passive: the server listens already
            reply = self.command(verb, arg)
            replies.append(reply)
            if reply.kind != 1:
                raise FtpError(reply)
            if data is None:
                data = data_end.open()      # active: the server connects now
            with data:
                moved = move_bytes(data)
            reply = self.read_reply()
            replies.append(reply)
            if reply.kind != 2:
                raise FtpError(reply)
            ### END SOLUTION
        except BaseException as failure:
            moved = moved or (meter.count if meter is not None else 0)
            trace.transfer_end(verb, arg or ".", direction, moved=moved, verdict="aborted",
                               started=started, data=data, control=self.control)
            if isinstance(failure, KeyboardInterrupt) and self.control is not None:
                replies += self.abort(data) if self.unanswered else []
                raise TransferInterrupted(verb, arg, moved, replies) from None
            if isinstance(failure, Exception) and not isinstance(failure, ConnectionLost):
                self._collect_final_reply(verb, replies, data, failure)
            raise
        finally:
            data_end.close()
            if data is not None:
                data.close()
        return TransferResult(verb, arg, direction, moved, time.monotonic() - started, replies,
                              getattr(data, "conn", None))

    def record_end(self, result: TransferResult, verdict: str, sha256: str | None = None) -> None:
        """Put a finished transfer in the trace, with the verdict of its check
        (a listing is not checked: "ok")."""
        trace.transfer_end(result.command, result.path or ".", result.direction, moved=result.bytes,
                           verdict=verdict, duration=result.seconds, data=result.data_conn,
                           control=self.control, sha256=sha256)

    def _collect_final_reply(self, verb: str, replies: list[Reply], data, failure: Exception) -> None:
        """After this side's end of a transfer failed (a reset, a full disk),
        read the server's final reply to it, so the control channel stays in
        step: otherwise the next command would be answered by this stale
        426 and every reply after it would be one behind.

        Closing the data connection first tells the server to stop sending.
        """
        if not replies or replies[-1].kind != 1:
            return                  # no transfer under way: no reply pending
        if data is not None:
            data.close()
        try:
            reply = self.read_reply()
        except ConnectionLost as lost:
            raise ConnectionLost(f"{lost} ({verb} failed: {failure})") from failure
        replies.append(reply)
        if reply.is_error:
            # The server's word (426, 451, 452...) explains the failure better
            # than our socket error does: report that.
            raise FtpError(reply) from failure

    # --- the user's commands -------------------------------------------------------

    def get(self, remote: str, local: str, progress=None) -> TransferResult:
        """Download ``remote`` into ``local``.

        The end of the data connection may be the server finishing, or the
        server dying: only the 226 that follows tells them apart. So the file
        keeps its temporary name until transfer() has seen the 226.
        """
        with helper.PartialFile(local) as partial:
            result = self._retrieve(remote, partial.file, progress)
            partial.commit()
        return result

    def get_checked(self, remote: str, local: str, progress=None) -> tuple[TransferResult, Verdict]:
        """Download ``remote`` into ``local`` and check it before it takes that name.

        The check runs while the file still has its temporary name, so the
        real name only ever holds a copy that matched the server's (or that
        could not be checked). A copy that does not match is kept beside it
        as ``local.mismatch`` for a look, and an older ``local`` stays as it
        was: a seasoned user wants neither a corrupt file under the real
        name nor a large download silently thrown away.
        """
        with helper.PartialFile(local) as partial:
            result = self._retrieve(remote, partial.file, progress)
            partial.file.flush()            # the check reads the file back
            if partial.partial is None:
                verdict = Verdict("none", None, "", "written to a device, nothing to read back")
            else:
                verdict = self.verify_or_abort(partial.written, remote, result)
            if verdict.ok is False:
                partial.discard_as(mismatch_name(partial.path))
            else:
                partial.commit()
        return result, verdict

    def verify_or_abort(self, local: str, remote: str, result: TransferResult) -> Verdict:
        """verify(), but Ctrl-C during the check (a HASH of a large file
        takes a while) sends ABOR and raises TransferInterrupted like a
        transfer does, with the bytes the transfer moved."""
        try:
            return self.verify(local, remote)
        except KeyboardInterrupt:
            replies = self.abort() if self.unanswered and self.control is not None else []
            raise TransferInterrupted("HASH", remote, result.bytes, replies) from None

    def _retrieve(self, remote: str, file, progress=None, command: str = "RETR") -> TransferResult:
        meter = _ByteMeter(progress)
        return self.transfer(command, remote, lambda data: helper.receive_into(data, file, meter),
                             "download", meter)

    def resume(self, remote: str, local: str, progress=None) -> TransferResult:
        """Fetch the rest of ``remote`` after the bytes ``local`` has already
        (REST then RETR, RFC 3659 5), appending to ``local``.

        Only where FEAT lists ``REST STREAM``: elsewhere REST may mean
        something else, or nothing. A missing local file starts from 0.
        """
        if self.feature_params.get("REST", "").upper() != "STREAM":
            raise ValueError("the server does not offer REST STREAM: cannot resume, use get")
        offset = os.path.getsize(local) if os.path.exists(local) else 0
        with open(local, "ab") as file:
            if offset:
                self.expect("REST", str(offset), kind=3)
            return self._retrieve(remote, file, progress)

    def put(self, local: str, remote: str, progress=None) -> TransferResult:
        """Upload ``local`` as ``remote``, announcing its size first (ALLO) so
        the server can tell a complete upload from a broken one."""
        self.command("ALLO", str(os.path.getsize(local)))
        meter = _ByteMeter(progress)
        return self.transfer("STOR", remote, lambda data: helper.send_file(data, local, meter),
                             "upload", meter)

    def listing(self, path: str = "", names_only: bool = False) -> str:
        chunks = []

        def collect(data):
            chunks.append(helper.receive_all(data))
            return len(chunks[0])

        result = self.transfer("NLST" if names_only else "LIST", path, collect, "listing")
        self.record_end(result, "ok")
        return chunks[0].decode("utf-8", "replace")

    def names(self, path: str = "", pattern: str = "*") -> list[str]:
        """The names NLST gives for ``path`` that match the glob ``pattern``
        (matched here: servers differ in what globs they accept)."""
        listed = [line.rstrip("\r") for line in self.listing(path, names_only=True).split("\n")]
        # Some servers answer "NLST dir" with "dir/name": match the last part.
        return [name for name in listed if name and fnmatch.fnmatchcase(name.rsplit("/", 1)[-1], pattern)]

    def size(self, path: str) -> int:
        return int(self.expect("SIZE", path).text.strip())

    def mtime(self, path: str) -> str:
        """The file's modification time as the server gives it (MDTM,
        RFC 3659 3): ``YYYYMMDDHHMMSS`` in UTC."""
        return self.expect("MDTM", path).text.strip()

    def mkdir(self, path: str) -> Reply:
        return self.expect("MKD", path)

    def rmdir(self, path: str) -> Reply:
        return self.expect("RMD", path)

    def delete(self, path: str) -> Reply:
        return self.expect("DELE", path)

    def rename(self, old: str, new: str) -> Reply:
        """RNFR then RNTO (RFC 959 4.1.3): the server answers 350 to the first."""
        self.expect("RNFR", old, kind=3)
        return self.expect("RNTO", new)

    def remote_sha256(self, path: str) -> str:
        reply = self.expect("HASH", path)
        # proftpd answers with a multi-line 213 ("213-Computing SHA-256
        # digest" first): the hash is on the last line.
        algorithm, start, end, digest = parse_hash_reply(reply.lines[-1][4:])
        if algorithm.upper() != "SHA-256" or start != 0:
            raise ValueError(f"unexpected HASH reply for {path}")
        return digest

    def verify(self, local: str, remote: str) -> Verdict:
        """Compare a local file with the server's copy: by SHA-256 if the server
        offers HASH, else by size only (which catches truncation, not corruption)."""
        ### BEGIN SOLUTION ex4: HASH if in self.features (compare hex digests), else SIZE, else unverified
        failure = ""
        if "HASH" in self.features:
            try:
                mine, theirs = helper.file_sha256(local), self.remote_sha256(remote)
                return Verdict("HASH", mine == theirs, mine, theirs)
            except (FtpError, ValueError) as err:
                failure = f"HASH failed: {err}"     # then try SIZE
        if "SIZE" in self.features:
            try:
                mine, theirs = os.path.getsize(local), self.size(remote)
                return Verdict("SIZE", mine == theirs, str(mine), str(theirs))
            except (FtpError, ValueError) as err:
                failure = f"{failure}; SIZE failed: {err}" if failure else f"SIZE failed: {err}"
        return Verdict("none", None, "", failure)
        ### END SOLUTION


def mismatch_name(path: str) -> str:
    """Where a download that failed its check is kept: ``NAME.mismatch``."""
    return f"{path}.mismatch"
