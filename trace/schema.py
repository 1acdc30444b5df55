"""The trace schema, as data, and a validator that checks events against it.

``trace/SCHEMA.md`` explains each event for people; this table is the same
schema for programs. A test keeps the two in step.

Run ``python -m trace.schema session.log`` to validate a log.
"""

from __future__ import annotations

import sys

from .tracer import FORMAT, SCHEMA_VERSION

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


def problems(event: dict) -> list[str]:
    """Everything wrong with one event; an empty list means it is valid."""
    found = []
    kind = event.get("type")
    if kind not in EVENTS:
        return [f"unknown event type {kind!r}"]
    required, optional = EVENTS[kind]
    for name, types in {**COMMON, **required}.items():
        if name not in event:
            found.append(f"{kind}: missing field {name!r}")
        elif not isinstance(event[name], types) or isinstance(event[name], bool):
            found.append(f"{kind}: field {name!r} has type {type(event[name]).__name__}")
    for name, types in optional.items():
        if name in event and not isinstance(event[name], types):
            found.append(f"{kind}: field {name!r} has type {type(event[name]).__name__}")
    allowed = set(COMMON) | set(required) | set(optional)
    found += [f"{kind}: unexpected field {name!r}" for name in event if name not in allowed]
    if event.get("role") not in ROLES:
        found.append(f"{kind}: role must be one of {sorted(ROLES)}")
    if "channel" in required and event.get("channel") not in CHANNELS:
        found.append(f"{kind}: channel must be one of {sorted(CHANNELS)}")
    if "dir" in required and event.get("dir") not in DIRECTIONS:
        found.append(f"{kind}: dir must be one of {sorted(DIRECTIONS)}")
    if kind in ("send", "recv") and event.get("dir") != ("out" if kind == "send" else "in"):
        found.append(f"{kind}: dir does not match the event type")
    if kind.startswith("transfer") and event.get("direction") not in TRANSFER_DIRECTIONS:
        found.append(f"{kind}: direction must be one of {sorted(TRANSFER_DIRECTIONS)}")
    if kind == "transfer_end" and event.get("verdict") not in VERDICTS:
        found.append(f"{kind}: verdict must be one of {sorted(VERDICTS)}")
    if kind == "header":
        if event.get("format") != FORMAT:
            found.append(f"header: format is {event.get('format')!r}, not {FORMAT!r}")
        if isinstance(event.get("schema"), int) and event["schema"] > SCHEMA_VERSION:
            found.append(f"header: schema {event['schema']} is newer than {SCHEMA_VERSION}")
    return found


def main(argv: list[str] | None = None) -> int:
    from .reader import TraceError, read_log

    import argparse
    parser = argparse.ArgumentParser(prog="python -m trace.schema",
                                     description="Check trace logs against the schema (trace/SCHEMA.md).")
    parser.add_argument("logs", nargs="+", metavar="LOG")
    bad = 0
    for path in parser.parse_args(argv).logs:
        count = 0
        try:
            for event in read_log(path):
                count += 1
                for problem in problems(event):
                    bad += 1
                    print(f"{path}:{event.lineno}: {problem}")
        except TraceError as err:
            print(err, file=sys.stderr)
            return 2
        print(f"{path}: {count} events, {'ok' if not bad else f'{bad} problems'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
