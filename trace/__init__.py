"""ftpkit's trace: every control and data message as a structured event.

This package shares its name with the standard library's ``trace`` module.
Run the kit from the repository root (``python -m trace.view ...``, or
``pytest``, which is configured to put the root first on ``sys.path``), so
that this package is the one imported. A notebook must put the repository
root first on ``sys.path`` before ``import trace``.

``import trace`` loads only the tracer, which is all a traced server or
client needs. The reader and the correlation are loaded the first time a
program asks for them (``trace.load``, ``trace.correlate``), through the
module ``__getattr__`` of PEP 562.
"""

import importlib
from pathlib import Path

from .tracer import (FORMAT, SCHEMA_VERSION, TracedSocket, Tracer, connected, current,
                     event, listening, start, stop, transfer_end)

# Names that live in other modules of the package, loaded on first use:
# name -> (module, name in it).
_LAZY = {
    "Event": ("reader", "Event"), "TraceError": ("reader", "TraceError"),
    "load": ("reader", "load"), "read_log": ("reader", "read_log"),
    "follow": ("reader", "follow"), "correlate_session": ("correlate", "correlate"),
}
# Every module of the package may be reached as an attribute
# (``trace.correlate.correlate(events, packets)``), imported on first use.
_SUBMODULES = {path.stem for path in Path(__file__).parent.glob("*.py") if path.stem != "__init__"}

__all__ = [
    "correlate", "correlate_session",
    "Event", "TraceError", "load", "read_log", "follow",
    "FORMAT", "SCHEMA_VERSION", "TracedSocket", "Tracer",
    "connected", "current", "event", "listening", "start", "stop", "transfer_end",
]


def __getattr__(name: str):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value          # the next lookup is a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
