"""ftpkit's trace: every control and data message as a structured event.

This package shares its name with the standard library's ``trace`` module.
Run the kit from the repository root (``python -m trace.view ...``, or
``pytest``, which is configured to put the root first on ``sys.path``), so
that this package is the one imported. A notebook must put the repository
root first on ``sys.path`` before ``import trace``.
"""

import importlib

from .tracer import (FORMAT, SCHEMA_VERSION, TracedSocket, Tracer, connected, current,
                     event, listening, start, stop)

__all__ = [
    "correlate_session",
    "Event", "TraceError", "load", "read_log",
    "FORMAT", "SCHEMA_VERSION", "TracedSocket", "Tracer",
    "connected", "current", "event", "listening", "start", "stop",
]

# Names loaded on first use, so that ``import trace`` in the server loads
# only the tracer: a server writes traces, it never reads or correlates them
# (correlation needs scapy). name -> (module, name in it).
_LAZY = {
    "Event": ("reader", "Event"), "TraceError": ("reader", "TraceError"),
    "load": ("reader", "load"), "read_log": ("reader", "read_log"),
    "correlate_session": ("correlate", "correlate"),
}


def __getattr__(name):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attribute)
    raise AttributeError(f"module 'trace' has no attribute {name!r}")
