"""The reference server with RFC 2577's PORT check switched off: for the
``nat`` scenario of :mod:`trace.netns` only. Never run it anywhere else.

The reference server, like vsftpd, connects only back to the address the
client's control connection comes from. Behind NAT that address is the
router's, while PORT names the client's private address, so the server
would refuse the PORT (501) and never try. Real servers can be told to
allow it (vsftpd ``port_promiscuous=YES``, proftpd ``AllowForeignAddress``),
and then they try, and fail, which is what the NAT scenario is there to
show: the SYN towards an address nobody outside can reach, and the 425.

Until the server has such an option of its own, this module sets the check
aside for exactly the duration of one PORT/EPRT: the session is told, for
that one call, that the address in the command is the client's own.

    python -m trace.permissive_server --host 192.0.2.2 --root DIR 21
"""

from __future__ import annotations

import importlib
import sys

from .launch import IMPLEMENTATION

server = importlib.import_module(f"{IMPLEMENTATION}.server")
session = importlib.import_module(f"{IMPLEMENTATION}.session")

_checked_connect = session.Session.connect_for_data


def _connect_anywhere(self, address):
    own = self.client_host
    self.client_host = address[0]
    try:
        return _checked_connect(self, address)
    finally:
        self.client_host = own


session.Session.connect_for_data = _connect_anywhere

if __name__ == "__main__":
    print("server: RFC 2577's PORT check is off (trace.permissive_server, for the NAT scenario)",
          file=sys.stderr)
    sys.exit(server.main())
