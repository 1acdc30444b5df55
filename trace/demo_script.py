"""The scripted demo session: what the client types, and the files it moves.

Plain data and one function, so that both :mod:`trace.record` (which records
this session by default) and :mod:`trace.demo` (which records and shows it)
can use it without importing each other.
"""

from __future__ import annotations

import os

from .launch import Session, run_session

# The commands the scripted client types: each line is what a student would
# type at the ftp> prompt.
SCRIPT = [
    "ls",
    "put notes.txt",
    "get photo.bin",
    "get missing.txt",        # the server answers 550, the session goes on
    "passive",                # switch to active mode: now the client listens
    "get photo.bin photo-active.bin",
    "quit",
]


def demo_files() -> tuple[dict, dict]:
    """Files to move: a text file on the client, a binary file on the server."""
    notes = ("Two channels: commands and replies on one connection,\n"
             "every file on a connection of its own.\n" * 40).encode()
    return {"photo.bin": 256 * 1024}, {"notes.txt": notes}


def record_session(log: str | os.PathLike, script: list[str] = SCRIPT, workdir=None) -> Session:
    """Run server and client as two processes tracing into ``log``.

    They are separate processes, as on two real machines: the log shows two
    pids appending to one file."""
    server_files, client_files = demo_files()
    return run_session(log, script, server_files, client_files, workdir=workdir)
