"""Print the interop matrix: everyday FTP clients x operations, against one server.

    python tests/interop_matrix.py            # against our server
    python tests/interop_matrix.py proftpd    # or pyftpdlib, vsftpd: to tell our faults from the client's

Each cell runs the real client (curl, wget, lftp, rclone, Python's ftplib) on
loopback, in passive and active mode (rclone has passive only), and checks
the result on disk; a failing cell shows the client's last words. Not a test
(the suite's tests are tests/test_interop_clients.py); a survey, run by hand.
vsftpd's anonymous root is read-only (it refuses a writable one), so every
write fails there by design.
"""

from __future__ import annotations

import ftplib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
import servers  # noqa: E402

KNOWN_TIME = 1_600_000_000          # 2020-09-13 12:26:40 UTC


class Failed(Exception):
    pass


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, **kwargs)
    if result.returncode:
        last = (result.stderr or result.stdout).strip().splitlines()
        raise Failed(f"exit {result.returncode}: {last[-1] if last else ''}")
    return result


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise Failed(what)


class Cells:
    """The cells for one server and one mode; each method named ``client__operation``."""

    def __init__(self, server, root: Path, local: Path, passive: bool, payload: bytes):
        self.server, self.root, self.local, self.passive, self.payload = server, root, local, passive, payload
        self.url = f"ftp://{server.host}:{server.port}"
        self.curl_mode = [] if passive else ["-P", "-"]
        self.wget_mode = [] if passive else ["--no-passive-ftp"]

    # -- helpers ----------------------------------------------------------------
    def curl(self, *arguments: str) -> subprocess.CompletedProcess:
        return run(["curl", "-sS", *self.curl_mode, *arguments])

    def wget(self, *arguments: str) -> subprocess.CompletedProcess:
        return run(["wget", "-q", *self.wget_mode, *arguments])

    def lftp(self, commands: str) -> subprocess.CompletedProcess:
        settings = (f"set ftp:passive-mode {'on' if self.passive else 'off'}; set cmd:fail-exit yes; "
                    "set net:max-retries 1; set net:timeout 10; set ftp:ssl-allow no")
        return run(["lftp", "-u", "anonymous,x@example.org", "-e", f"{settings}; {commands}; quit", self.url],
                   cwd=self.local)

    def ftplib(self) -> ftplib.FTP:
        session = ftplib.FTP()
        session.connect(self.server.host, self.server.port, timeout=10)
        session.login()
        session.set_pasv(self.passive)
        return session

    def same(self, path: Path, content: bytes | None = None) -> None:
        expect(path.exists() and path.read_bytes() == (self.payload if content is None else content),
               f"{path.name}: wrong or missing content")

    # -- curl ---------------------------------------------------------------------
    def curl__ls(self):
        expect("f.bin" in self.curl(self.url + "/").stdout, "f.bin not listed")

    def curl__get(self):
        self.curl("-o", str(self.local / "c.bin"), self.url + "/f.bin")
        self.same(self.local / "c.bin")

    def curl__put(self):
        self.curl("-T", str(self.local / "up.bin"), self.url + "/cup.bin")
        self.same(self.root / "cup.bin")

    def curl__resume(self):
        self.curl("-r", "0-99999", "-o", str(self.local / "r.bin"), self.url + "/f.bin")
        self.curl("-C", "-", "-o", str(self.local / "r.bin"), self.url + "/f.bin")
        self.same(self.local / "r.bin")

    def curl__create_dirs(self):
        self.curl("--ftp-create-dirs", "-T", str(self.local / "up.bin"), self.url + "/a/b/c.bin")
        self.same(self.root / "a" / "b" / "c.bin")

    def curl__delete(self):
        (self.root / "gone.txt").write_text("x")
        self.curl("-Q", "-DELE gone.txt", self.url + "/")
        expect(not (self.root / "gone.txt").exists(), "not deleted")

    def curl__rename(self):
        (self.root / "ren.txt").write_text("r")
        self.curl("-Q", "-RNFR ren.txt", "-Q", "-RNTO ren2.txt", self.url + "/")
        expect((self.root / "ren2.txt").exists(), "not renamed")

    def curl__timestamps(self):
        self.curl("-R", "-o", str(self.local / "t.bin"), self.url + "/f.bin")
        expect(int((self.local / "t.bin").stat().st_mtime) == KNOWN_TIME, "modification time not kept")

    def curl__append(self):
        (self.root / "app.txt").write_bytes(b"ab")
        (self.local / "tail.txt").write_bytes(b"cd")
        self.curl("--append", "-T", str(self.local / "tail.txt"), self.url + "/app.txt")
        self.same(self.root / "app.txt", b"abcd")

    # -- wget -----------------------------------------------------------------------
    def wget__get(self):
        self.wget("-O", str(self.local / "w.bin"), self.url + "/f.bin")
        self.same(self.local / "w.bin")

    def wget__resume(self):
        (self.local / "wc.bin").write_bytes(self.payload[:123_456])
        self.wget("-c", "-O", str(self.local / "wc.bin"), self.url + "/f.bin")
        self.same(self.local / "wc.bin")

    def wget__recursive(self):
        (self.root / "tree" / "sub").mkdir(parents=True, exist_ok=True)
        (self.root / "tree" / "sub" / "x.bin").write_bytes(self.payload)
        self.wget("-r", "-nH", "-P", str(self.local / "wr"), self.url + "/tree/")
        self.same(self.local / "wr" / "tree" / "sub" / "x.bin")

    def wget__timestamps(self):
        self.wget("-N", "-P", str(self.local / "wts"), self.url + "/f.bin")
        kept = int((self.local / "wts" / "f.bin").stat().st_mtime)
        expect(kept == KNOWN_TIME, f"modification time {kept - KNOWN_TIME:+d} s off (wget reads LIST's date)")

    # -- lftp -----------------------------------------------------------------------
    def lftp__ls(self):
        expect("f.bin" in self.lftp("ls").stdout, "f.bin not listed")

    def lftp__get(self):
        self.lftp("get f.bin -o l.bin")
        self.same(self.local / "l.bin")

    def lftp__put(self):
        self.lftp("put up.bin -o lup.bin")
        self.same(self.root / "lup.bin")

    def lftp__resume(self):
        (self.local / "lr.bin").write_bytes(self.payload[:50_000])
        self.lftp("get -c f.bin -o lr.bin")
        self.same(self.local / "lr.bin")

    def lftp__mkdir_rmdir(self):
        self.lftp("mkdir ld; rmdir ld")
        expect(not (self.root / "ld").exists(), "folder still there")

    def lftp__rm(self):
        (self.root / "lrm.txt").write_text("x")
        self.lftp("rm lrm.txt")
        expect(not (self.root / "lrm.txt").exists(), "not deleted")

    def lftp__mv(self):
        (self.root / "m1").write_text("m")
        self.lftp("mv m1 m2")
        expect((self.root / "m2").exists(), "not renamed")

    def lftp__mirror_both_ways(self):
        tree = self.local / "tree"
        (tree / "empty").mkdir(parents=True)
        for name in ("sp ace.txt", "-dash", "\u00fcn\u00ef.txt"):
            (tree / name).write_text(name)
        self.lftp("mirror -R --no-perms tree rtree")
        expect((self.root / "rtree" / "empty").is_dir() and (self.root / "rtree" / "-dash").exists(), "upload")
        self.lftp("mirror --no-perms rtree back")
        expect((self.local / "back" / "\u00fcn\u00ef.txt").exists() and (self.local / "back" / "empty").is_dir(),
               "download")

    def lftp__timestamps(self):
        (self.local / "lt").mkdir()
        self.lftp("get f.bin -o lt/f.bin")
        expect(int((self.local / "lt" / "f.bin").stat().st_mtime) == KNOWN_TIME, "modification time not kept")

    # -- ftplib -----------------------------------------------------------------------
    def ftplib__resume(self):
        session, tail = self.ftplib(), bytearray()
        session.retrbinary("RETR f.bin", tail.extend, rest=100_000)
        session.quit()
        expect(bytes(tail) == self.payload[100_000:], "wrong tail")

    def ftplib__append(self):
        (self.root / "ap2").write_bytes(b"12")
        session = self.ftplib()
        session.storbinary("APPE ap2", io.BytesIO(b"34"))
        session.quit()
        self.same(self.root / "ap2", b"1234")

    def ftplib__folders_rename_delete(self):
        session = self.ftplib()
        session.mkd("fd")
        session.cwd("fd")
        session.storbinary("STOR in.txt", io.BytesIO(b"x"))
        session.rename("in.txt", "out.txt")
        session.delete("out.txt")
        session.cwd("..")
        session.rmd("fd")
        session.quit()
        expect(not (self.root / "fd").exists(), "folder still there")

    def ftplib__mlsd(self):
        session = self.ftplib()
        facts = dict(session.mlsd())
        session.quit()
        expect(facts["f.bin"]["modify"].startswith("20200913122640"), f"f.bin: {facts['f.bin']}")

    def ftplib__abort(self):
        with open(self.root / "slow.bin", "wb") as big:
            big.truncate(300_000_000)
        session = self.ftplib()
        data = session.transfercmd("RETR slow.bin")
        data.recv(8192)
        first = session.abort()
        data.close()
        second = session.getresp() if first.startswith("426") else ""
        noop = session.voidcmd("NOOP")
        session.quit()
        (self.root / "slow.bin").unlink()
        expect(noop.startswith("200"), f"{first} / {second} / {noop}")

    # -- rclone (passive only) ------------------------------------------------------------
    def rclone(self, *arguments: str, share: bool = True) -> subprocess.CompletedProcess:
        sharing = ["--ftp-concurrency", "4", "--checkers", "2", "--transfers", "2"] if share else []
        env = dict(os.environ, RCLONE_CONFIG=str(self.local / "rclone.conf"))
        return run(["rclone", "--retries", "1", "--low-level-retries", "1", "--contimeout", "5s",
                    "--timeout", "10s", *sharing, *arguments], env=env)

    def remote(self) -> str:
        obscured = run(["rclone", "obscure", "x@example.org"]).stdout.strip()
        return f":ftp,host={self.server.host},port={self.server.port},user=anonymous,pass={obscured}:"

    def rclone_tree(self) -> Path:
        tree = self.local / "rt"
        if not tree.exists():
            (tree / "empty").mkdir(parents=True)
            for index in range(8):
                (tree / f"file {index}.bin").write_bytes(self.payload[index * 1000:])
        return tree

    def rclone__sync_check_defaults(self):
        tree, remote = self.rclone_tree(), self.remote()
        self.rclone("sync", "--create-empty-src-dirs", str(tree), remote + "rd", share=False)
        self.rclone("check", "--download", str(tree), remote + "rd", share=False)

    def rclone__sync_check_sharing_4(self):
        tree, remote = self.rclone_tree(), self.remote()
        self.rclone("sync", "--create-empty-src-dirs", str(tree), remote + "rs")
        self.rclone("check", "--download", str(tree), remote + "rs")
        self.rclone("sync", remote + "rs", str(self.local / "rback"))
        self.rclone("check", "--download", remote + "rs", str(self.local / "rback"))

    def rclone__modtime(self):
        expect("2020-09-13 12:26:40" in self.rclone("lsl", self.remote() + "f.bin").stdout, "modification time")

    def rclone__moveto(self):
        (self.root / "mv-src.bin").write_bytes(b"m")
        self.rclone("moveto", self.remote() + "mv-src.bin", self.remote() + "mv-dst.bin")
        expect((self.root / "mv-dst.bin").exists(), "not moved")

    def rclone__purge(self):
        (self.root / "purge" / "in").mkdir(parents=True)
        (self.root / "purge" / "in" / "x").write_text("x")
        self.rclone("purge", self.remote() + "purge")
        expect(not (self.root / "purge").exists(), "folder still there")


def survey(kind: str) -> list[tuple[str, str, str, str]]:
    rows = []
    base = Path(tempfile.mkdtemp(prefix="ftpkit-matrix-"))
    try:
        for passive in (True, False):
            mode = "passive" if passive else "active"
            root, local = base / mode / "root", base / mode / "local"
            root.mkdir(parents=True)
            local.mkdir()
            payload = os.urandom(300_000)
            (root / "f.bin").write_bytes(payload)
            os.utime(root / "f.bin", (KNOWN_TIME, KNOWN_TIME))
            (local / "up.bin").write_bytes(payload)
            with servers.LAUNCHERS[kind](root, base / mode / "server") as server:
                cells = Cells(server, root, local, passive, payload)
                for name in [n for n in vars(Cells) if "__" in n and not n.startswith("_")]:
                    client, operation = name.split("__")
                    if client == "rclone" and not passive:
                        continue
                    if shutil.which(client if client != "ftplib" else "python3") is None:
                        rows.append((client, operation, mode, f"skipped: {client} is not installed"))
                        continue
                    try:
                        getattr(cells, name)()
                        rows.append((client, operation, mode, "pass"))
                    except (Failed, ftplib.Error, OSError, KeyError, subprocess.TimeoutExpired) as failure:
                        rows.append((client, operation, mode, f"FAIL {failure}"[:160]))
            leftovers = [p.name for p in root.rglob("*.part")]
            if leftovers:
                rows.append(("server", "no .part files left", mode, f"FAIL {leftovers}"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows


def main() -> int:
    kind = sys.argv[1] if len(sys.argv) > 1 else "ftpkit"
    if kind not in servers.LAUNCHERS:
        print(f"interop_matrix: unknown server {kind!r}; one of {', '.join(servers.LAUNCHERS)}", file=sys.stderr)
        return 2
    rows = survey(kind)
    for client, operation, mode, verdict in rows:
        print(f"{client:8} {operation.replace('_', ' '):24} {mode:8} {verdict}")
    failed = sum(verdict.startswith("FAIL") for *_, verdict in rows)
    print(f"{kind}: {len(rows) - failed} of {len(rows)} cells pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
