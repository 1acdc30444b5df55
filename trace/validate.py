"""The one validator of trace events and of the trace header.

The schema itself is data in :mod:`trace.schema`; this module says what is
wrong with an event, in the words every tool uses (the reader, the model,
``python -m trace.schema``, whose command line is :mod:`trace.check`). It compares exact types, so true and false
never pass as numbers.
"""

from __future__ import annotations

from .schema import (CHANNELS, COMMON, DIRECTIONS, EVENTS, ROLES, TRANSFER_DIRECTIONS,
                     VERDICTS)
from .tracer import FORMAT, SCHEMA_VERSION

# Per event type, the fields and their types, ready for a quick check of every event.
_REQUIRED = {kind: tuple({**COMMON, **required}.items())
             for kind, (required, _optional) in EVENTS.items()}
_OPTIONAL = {kind: tuple(optional.items()) for kind, (_required, optional) in EVENTS.items()}
_ALLOWED = {kind: set(COMMON) | set(required) | set(optional)
            for kind, (required, optional) in EVENTS.items()}
_MISSING = object()
_NUMBER = (int, float)


def header_problem(header) -> str | None:
    """Why a header's process cannot be read by this kit, or None."""
    if header.get("format") != FORMAT:
        return f"header says format {header.get('format')!r}, expected {FORMAT!r}"
    version = header.get("schema")
    if type(version) is not int:
        return f"header has 'schema' of type {type(version).__name__}"
    if version > SCHEMA_VERSION:
        return (f"schema version {version} is newer than this reader understands "
                f"({SCHEMA_VERSION}); update the kit")
    return None


def field_problem(event) -> str | None:
    """The first field of a known event that is missing or of the wrong type, or None."""
    kind = event["type"]
    for name, types in _REQUIRED[kind]:
        value = event.get(name, _MISSING)
        if type(value) not in types:
            if value is _MISSING:
                return f"{kind} event lacks field {name!r}"
            return f"{kind} event has {name!r} of type {type(value).__name__}"
    for name, types in _OPTIONAL[kind]:
        if name in event and type(event[name]) not in types:
            return f"{kind} event has {name!r} of type {type(event[name]).__name__}"
    return None


def segment_ok(event) -> bool:
    """The quick check of a send or recv (most of any log): the fields read every time."""
    get = event.get
    return (type(get("t")) in _NUMBER and type(get("pid")) is int and type(get("conn")) is int
            and type(get("offset")) is int and type(get("len")) is int
            and get("role") in ROLES and get("dir") in DIRECTIONS)


def value_problems(event) -> list[str]:
    """Fields of the right type whose value is not one the schema allows."""
    kind = event["type"]
    required = EVENTS[kind][0]
    found = []
    if event.get("role") not in ROLES:
        found.append(f"{kind} event: role must be one of {sorted(ROLES)}")
    if "channel" in required and event.get("channel") not in CHANNELS:
        found.append(f"{kind} event: channel must be one of {sorted(CHANNELS)}")
    if "dir" in required and event.get("dir") not in DIRECTIONS:
        found.append(f"{kind} event: dir must be one of {sorted(DIRECTIONS)}")
    if kind in ("send", "recv") and event.get("dir") != ("out" if kind == "send" else "in"):
        found.append(f"{kind} event: dir does not match the event type")
    if kind.startswith("transfer") and event.get("direction") not in TRANSFER_DIRECTIONS:
        found.append(f"{kind} event: direction must be one of {sorted(TRANSFER_DIRECTIONS)}")
    if kind == "transfer_end" and event.get("verdict") not in VERDICTS:
        found.append(f"{kind} event: verdict must be one of {sorted(VERDICTS)}")
    return found


def problems(event) -> list[str]:
    """Everything wrong with one event; an empty list means it is valid."""
    kind = event.get("type")
    if kind not in EVENTS:
        return [f"unknown event type {kind!r}"]
    found = []
    for name, types in _REQUIRED[kind]:
        if name not in event:
            found.append(f"{kind} event lacks field {name!r}")
        elif type(event[name]) not in types:
            found.append(f"{kind} event has {name!r} of type {type(event[name]).__name__}")
    for name, types in _OPTIONAL[kind]:
        if name in event and type(event[name]) not in types:
            found.append(f"{kind} event has {name!r} of type {type(event[name]).__name__}")
    found += [f"{kind} event has an unexpected field {name!r}"
              for name in event if name not in _ALLOWED[kind]]
    found += value_problems(event)
    if kind == "header":
        problem = header_problem(event)
        if problem is not None:
            found.append(problem)
    return found

