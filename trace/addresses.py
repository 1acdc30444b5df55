"""Host and port as the trace writes them: ``"127.0.0.1:21"``, ``"[::1]:21"``.

One spelling of an address, so that an address read from a trace event,
from an EPRT command and from a captured IPv6 header compare equal: IPv6
is written in its compressed form, an IPv4-mapped IPv6 address
(``::ffff:127.0.0.1``, what a dual-stack socket reports) as plain IPv4, and
a zone (``%lo``) is dropped.
"""

from __future__ import annotations

import socket

__all__ = ["normal_host", "join_address", "split_address"]


def normal_host(host: str) -> str:
    """``host`` in the one spelling used for comparisons."""
    host = host.split("%", 1)[0]
    if host.lower().startswith("::ffff:") and "." in host:
        return host[7:]                      # IPv4-mapped IPv6
    if ":" in host:
        try:
            return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, host))
        except OSError:
            return host
    return host


def join_address(host: str, port: int) -> str:
    """``("::1", 21)`` as ``"[::1]:21"``, ``("127.0.0.1", 21)`` as ``"127.0.0.1:21"``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:21"`` or ``"[::1]:21"`` as ``(host, port)``, host normalised."""
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return normal_host(host), int(port)
