"""The trace schema, as data, and a validator that checks events against it.

``trace/SCHEMA.md`` explains each event for people; this table is the same
schema for programs. A test keeps the two in step.

Run ``python -m trace.schema session.log`` to validate a log; the checking
is :mod:`trace.validate`'s.
"""

from __future__ import annotations

import sys

from .tracer import FORMAT, SCHEMA_VERSION  # noqa: F401  (part of the schema)

INT = (int,)
NUM = (int, float)
STR = (str,)
OPT_STR = (str, type(None))
OPT_INT = (int, type(None))

# Fields every event carries.
COMMON = {"type": STR, "t": NUM, "seq": INT, "role": STR, "pid": INT}

# The fields that identify a connection end.
_CONN = {"conn": INT, "channel": STR, "local": OPT_STR, "remote": OPT_STR}
_BYTES = dict(_CONN, dir=STR, offset=INT, len=INT)

# type -> (required fields, optional fields)
EVENTS: dict[str, tuple[dict, dict]] = {
    "header": ({"format": STR, "schema": INT, "host": STR, "start": NUM}, {}),
    "listen": ({"conn": INT, "channel": STR, "local": STR}, {}),
    "connect": (_CONN, {}),
    "accept": (dict(_CONN, listener=INT), {}),
    "send": (_BYTES, {"text": STR, "repeat": INT}),
    "recv": (_BYTES, {"text": STR, "repeat": INT}),
    "close": (_CONN, {"sent": INT, "received": INT}),
    "command": (dict(_BYTES, verb=STR, arg=STR, text=STR), {"repeat": INT}),
    "reply": (dict(_BYTES, code=INT, text=STR), {"repeat": INT}),
    "transfer_start": ({"command": STR, "path": STR, "direction": STR},
                       {"conn": OPT_INT, "control": OPT_INT}),
    "transfer_end": ({"command": STR, "path": STR, "direction": STR, "bytes": INT,
                      "duration": NUM, "verdict": STR},
                     {"conn": OPT_INT, "control": OPT_INT, "sha256": OPT_STR}),
    "error": ({"message": STR}, {"conn": OPT_INT, "code": OPT_INT}),
}

CHANNELS = {"control", "data"}
DIRECTIONS = {"in", "out"}
ROLES = {"server", "client"}
TRANSFER_DIRECTIONS = {"download", "upload", "listing"}
VERDICTS = {"ok", "verified", "mismatch", "unverified", "aborted"}


if __name__ == "__main__":
    # The checking is trace.validate's, its command line trace.check's:
    # this module is the schema as data.
    from trace.check import main
    sys.exit(main(prog="python -m trace.schema"))
