"""ftpkit's trace: every control and data message as a structured event.

This package shares its name with the standard library's ``trace`` module.
Run the kit from the repository root (``python -m trace.view ...``, or
``pytest``, which is configured to put the root first on ``sys.path``), so
that this package is the one imported. A notebook must put the repository
root first on ``sys.path`` before ``import trace``.
"""

from .reader import Event, TraceError, load, read_log
from .tracer import (FORMAT, SCHEMA_VERSION, TracedSocket, Tracer, connected, current,
                     event, listening, start, stop)

__all__ = [
    "correlate_session",
    "Event", "TraceError", "load", "read_log",
    "FORMAT", "SCHEMA_VERSION", "TracedSocket", "Tracer",
    "connected", "current", "event", "listening", "start", "stop",
]


def __getattr__(name):
    # Loaded on first use, so that ``import trace`` in the server stays cheap:
    # correlation needs scapy, and a server only writes traces.
    if name == "correlate_session":
        from .correlate import correlate
        return correlate
    raise AttributeError(f"module 'trace' has no attribute {name!r}")
