"""How fast ``python -m trace.view --summary`` is, and how much memory it needs.

    python bench/bench_view.py                         # 100,000 and 1,000,000 events
    python bench/bench_view.py --events 10000,100000   # other sizes (quicker)
    python bench/bench_view.py --kinds errors          # only the flood of error replies

For each size it writes two logs, as the tracer would write them (both sides):

* ``normal``: control lines, PASV, RETR, one data connection per file
  carrying 64 KiB segments, transfer events;
* ``errors``: a client sending junk lines, each answered by a 500 reply, as
  an unfolded flood (what the tracer wrote before it folded floods, and what
  a hand-made log may hold): mostly error replies.

and prints one row per log:

* ``json decode``: the time to merely ``json.loads`` every line of the log,
  the least any reader could do;
* ``--summary``: the time of ``python -m trace.view --summary LOG`` (both
  timed as fresh processes, so each includes starting Python; the best of
  ``--runs`` runs, 3 by default, since a busy machine adds noise);
* ``ratio``: the second over the first (goal: at most 3x);
* ``peak traced`` and ``max RSS``: the peak of Python allocations
  (tracemalloc) and the process's resident size at its largest, each
  measured in a fresh process of its own so that peaks do not mix, in each
  mode: ``--summary``, the diagram, and ``--json`` (goal: flat in every
  mode, not growing with the log).

The number of files (``--files``, default 20) stays the same for every size,
so the bigger logs have bigger files: the viewer keeps one small record per
connection and per transfer (the summary lists them), and nothing per event.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0
CLIENT, SERVER = 4001, 4002
SEGMENT = 65536


class LogWriter:
    """Writes tracer-shaped events fast (formatted strings, not json.dumps)."""

    def __init__(self, out):
        self.out = out
        self.t = T0
        self.seq = {CLIENT: 0, SERVER: 0}
        self.count = 0

    def emit(self, pid: int, type: str, fields: str) -> None:
        role = "client" if pid == CLIENT else "server"
        self.t += 0.000005
        self.out.write(f'{{"type":"{type}","t":{self.t:.6f},"seq":{self.seq[pid]},'
                       f'"role":"{role}","pid":{pid}{fields}}}\n')
        self.seq[pid] += 1
        self.count += 1


def end(conn: int, channel: str, local: str, remote: str) -> str:
    return f',"conn":{conn},"channel":"{channel}","local":"{local}","remote":"{remote}"'


def write_session(path: Path, events: int, files: int) -> int:
    """A session of ``files`` downloads, about ``events`` events long."""
    # Everything but the data segments: 19 events for the session, 28 per file
    # (5 control lines of 4 events: each side's raw send or recv and its
    # command or reply; a listen, connect, accept, 2 closes, the FIN, and the
    # transfer's start and end).
    overhead = 19 + 28 * files
    segments = max(1, (events - overhead) // (2 * files))
    c_ctl, s_ctl = "127.0.0.1:50000", "127.0.0.1:2121"
    with open(path, "w", encoding="utf-8") as out:
        w = LogWriter(out)
        offsets = {CLIENT: 0, SERVER: 0}

        def line(sender: int, text: str) -> None:
            receiver = CLIENT if sender == SERVER else SERVER
            size = len(text) + 2
            is_reply = text[:3].isdigit()
            for pid, kind, direction in ((sender, "send", "out"), (receiver, "recv", "in")):
                local, remote = (c_ctl, s_ctl) if pid == CLIENT else (s_ctl, c_ctl)
                conn = 1 if pid == CLIENT else 2
                base = (end(conn, "control", local, remote)
                        + f',"dir":"{direction}","offset":{offsets[sender]},"len":{size}')
                w.emit(pid, kind, base + f',"text":"{text}\\r\\n"')
                if is_reply:
                    w.emit(pid, "reply", base + f',"code":{text[:3]},"text":"{text}"')
                else:
                    verb, _, arg = text.partition(" ")
                    w.emit(pid, "command", base + f',"verb":"{verb}","arg":"{arg}","text":"{text}"')
            offsets[sender] += size

        for pid in (SERVER, CLIENT):
            w.emit(pid, "header", f',"format":"ftpkit-trace","schema":1,"host":"bench",'
                                  f'"start":{w.t:.6f}')
        w.emit(SERVER, "listen", f',"conn":1,"channel":"control","local":"{s_ctl}"')
        w.emit(CLIENT, "connect", end(1, "control", c_ctl, s_ctl))
        w.emit(SERVER, "accept", ',"listener":1' + end(2, "control", s_ctl, c_ctl))
        line(SERVER, "220 ftpkit ready")
        for n in range(files):
            c_data, s_data = f"127.0.0.1:{51000 + n}", f"127.0.0.1:{40000 + n}"
            c_conn, s_conn, listener = 2 + n, 3 + 2 * n + 1, 3 + 2 * n
            line(CLIENT, "PASV")
            w.emit(SERVER, "listen", f',"conn":{listener},"channel":"data","local":"{s_data}"')
            line(SERVER, "227 Entering Passive Mode (127,0,0,1,156,64)")
            line(CLIENT, f"RETR file{n}.bin")
            w.emit(CLIENT, "connect", end(c_conn, "data", c_data, s_data))
            w.emit(SERVER, "accept", f',"listener":{listener}' + end(s_conn, "data", s_data, c_data))
            line(SERVER, "150 Opening data connection")
            w.emit(SERVER, "transfer_start", f',"command":"RETR","path":"/file{n}.bin",'
                                             f'"direction":"download","conn":{s_conn},"control":2')
            for k in range(segments):
                w.emit(SERVER, "send", end(s_conn, "data", s_data, c_data)
                       + f',"dir":"out","offset":{k * SEGMENT},"len":{SEGMENT}')
                w.emit(CLIENT, "recv", end(c_conn, "data", c_data, s_data)
                       + f',"dir":"in","offset":{k * SEGMENT},"len":{SEGMENT}')
            total = segments * SEGMENT
            w.emit(SERVER, "close", end(s_conn, "data", s_data, c_data)
                   + f',"sent":{total},"received":0')
            w.emit(CLIENT, "recv", end(c_conn, "data", c_data, s_data)
                   + f',"dir":"in","offset":{total},"len":0')
            w.emit(CLIENT, "close", end(c_conn, "data", c_data, s_data)
                   + f',"sent":0,"received":{total}')
            w.emit(SERVER, "transfer_end", f',"command":"RETR","path":"/file{n}.bin",'
                   f'"direction":"download","conn":{s_conn},"control":2,"bytes":{total},'
                   f'"duration":0.5,"sha256":null,"verdict":"ok"')
            line(SERVER, "226 Transfer complete")
        line(CLIENT, "QUIT")
        line(SERVER, "221 Bye")
        w.emit(SERVER, "close", end(2, "control", s_ctl, c_ctl) + ',"sent":0,"received":0')
        w.emit(CLIENT, "close", end(1, "control", c_ctl, s_ctl) + ',"sent":0,"received":0')
        return w.count


def write_error_flood(path: Path, events: int) -> int:
    """A session that is mostly error replies: junk lines, each answered by a 500."""
    c_ctl, s_ctl = "127.0.0.1:50000", "127.0.0.1:2121"
    junk = max(1, (events - 7) // 8)
    with open(path, "w", encoding="utf-8") as out:
        w = LogWriter(out)
        offsets = {CLIENT: 0, SERVER: 0}

        def line(sender: int, text: str, n: int) -> None:
            receiver = CLIENT if sender == SERVER else SERVER
            size = len(text) + 2
            for pid, kind, direction in ((sender, "send", "out"), (receiver, "recv", "in")):
                local, remote = (c_ctl, s_ctl) if pid == CLIENT else (s_ctl, c_ctl)
                conn = 1 if pid == CLIENT else 2
                base = (end(conn, "control", local, remote)
                        + f',"dir":"{direction}","offset":{offsets[sender]},"len":{size}')
                w.emit(pid, kind, base + f',"text":"{text}\\r\\n"')
                if sender == SERVER:
                    w.emit(pid, "reply", base + f',"code":{text[:3]},"text":"{text}"')
                else:
                    w.emit(pid, "command", base + f',"verb":"{text}","arg":"","text":"{text}"')
            offsets[sender] += size

        for pid in (SERVER, CLIENT):
            w.emit(pid, "header", f',"format":"ftpkit-trace","schema":1,"host":"bench",'
                                  f'"start":{w.t:.6f}')
        w.emit(SERVER, "listen", f',"conn":1,"channel":"control","local":"{s_ctl}"')
        w.emit(CLIENT, "connect", end(1, "control", c_ctl, s_ctl))
        w.emit(SERVER, "accept", ',"listener":1' + end(2, "control", s_ctl, c_ctl))
        for n in range(junk):
            line(CLIENT, f"X{n}", n)
            line(SERVER, f"500 Unknown command X{n}.", n)
        w.emit(SERVER, "close", end(2, "control", s_ctl, c_ctl) + ',"sent":0,"received":0')
        w.emit(CLIENT, "close", end(1, "control", c_ctl, s_ctl) + ',"sent":0,"received":0')
        return w.count


LOGS = {"normal": write_session, "errors": write_error_flood}
MODES = {"--summary": ["--summary"], "diagram": ["--width", "120"], "--json": ["--json"]}

# What each fresh process runs. Each prints one number on its last line.
JSON_DECODE = """
import json, sys
with open(sys.argv[1], "rb") as f:
    for line in f:
        json.loads(line)
"""
PEAK_MEMORY = """
import os, resource, sys, tracemalloc
sys.path.insert(0, os.getcwd())
from trace.view import main
sys.stdout = open(os.devnull, "w")
tracemalloc.start()
status = main(sys.argv[2:] + [sys.argv[1]])
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
sys.stdout = sys.__stdout__
print(status, peak, rss)
"""


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def best_of(runs: int, command: list[str]) -> float:
    return min(timed(command) for _ in range(runs))


def peak_memory(log: Path, mode: list[str]) -> tuple[int, int]:
    result = subprocess.run([sys.executable, "-c", PEAK_MEMORY, str(log), *mode], cwd=ROOT,
                            check=True, capture_output=True, text=True)
    status, peak, rss = result.stdout.split()[-3:]
    if status != "0":
        raise SystemExit(f"trace.view {' '.join(mode)} failed on {log}: {result.stderr}")
    return int(peak), int(rss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", default="100000,1000000",
                        help="comma-separated log sizes in events (default 100000,1000000)")
    parser.add_argument("--files", type=int, default=20, help="downloads in each session")
    parser.add_argument("--runs", type=int, default=3, help="time each command this many "
                                                          "times and keep the best")
    parser.add_argument("--kinds", default=",".join(LOGS),
                        help=f"which logs (default {','.join(LOGS)})")
    args = parser.parse_args()
    sizes = [int(n) for n in args.events.split(",")]
    kinds = args.kinds.split(",")
    MiB = 1 << 20
    memory_header = " ".join(f"{mode + ' peak/RSS':>22}" for mode in MODES)
    print(f"{'log':>7} {'events':>10} {'size':>8} {'json decode':>12} {'--summary':>10} "
          f"{'ratio':>6} {memory_header}")
    with tempfile.TemporaryDirectory(prefix="bench-view-") as tmp:
        for size in sizes:
            for kind in kinds:
                log = Path(tmp) / f"{kind}-{size}.log"
                count = (write_session(log, size, args.files) if kind == "normal"
                         else LOGS[kind](log, size))
                decode = best_of(args.runs, [sys.executable, "-c", JSON_DECODE, str(log)])
                view = best_of(args.runs, [sys.executable, "-m", "trace.view", "--summary",
                                           str(log)])
                memory = []
                for mode in MODES.values():
                    peak, rss = peak_memory(log, mode)
                    memory.append(f"{peak / MiB:>9.2f} /{rss / MiB:>5.0f} MiB")
                print(f"{kind:>7} {count:>10,} {log.stat().st_size / MiB:>5.0f} MB "
                      f"{decode:>10.2f} s {view:>8.2f} s {view / decode:>5.2f}x "
                      + " ".join(f"{m:>22}" for m in memory), flush=True)
                log.unlink()
    print("goals: ratio at most 3x; peak memory flat as the log grows, in every mode")
    return 0


if __name__ == "__main__":
    sys.exit(main())
