"""A deliberately misbehaving FTP server for the client's safety tests.

Real sockets on loopback, one connection, driven by a small script: each
test says how the server answers, so a test can make it lie, stall, or
flood, which no well-behaved server (ours, vsftpd, proftpd) would do.
"""

from __future__ import annotations

import socket
import threading


class RogueServer:
    """Serve one control connection with ``behave(control, server)`` in a thread.

    The script reads commands with :meth:`command` and answers with
    :meth:`send`; :meth:`passive_listener` gives it a data port to announce.
    Used as a context manager, it closes every socket it opened and joins
    its thread, so nothing outlives the test.
    """

    def __init__(self, behave):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(20)
        self.address = self.listener.getsockname()
        self.behave = behave
        self.sockets: list[socket.socket] = []
        self.error: BaseException | None = None
        self.sent = 0              # bytes the script managed to send on the control channel
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RogueServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for sock in self.sockets:
            sock.close()
        self.listener.close()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "the rogue server's thread did not end"

    def _run(self) -> None:
        try:
            control, _ = self.listener.accept()
        except OSError:
            return
        self.sockets.append(control)
        control.settimeout(20)
        self.reader = control.makefile("rb")
        try:
            self.behave(control, self)
        except OSError:
            pass                    # the client went away: that is often the point
        except BaseException as err:   # noqa: BLE001 - reported by the test
            self.error = err
        finally:
            self.reader.close()
            control.close()

    # --- for the scripts -----------------------------------------------------------

    def command(self) -> str:
        """The next command line, without its CRLF ("" if the client closed)."""
        return self.reader.readline().decode("latin-1").rstrip("\r\n")

    def send(self, control, text: str | bytes) -> None:
        data = text if isinstance(text, bytes) else text.encode("latin-1")
        control.sendall(data)
        self.sent += len(data)

    def passive_listener(self) -> tuple[socket.socket, str]:
        """A data listener and the 227 reply announcing it."""
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(20)
        self.sockets.append(listener)
        port = listener.getsockname()[1]
        return listener, f"227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255}).\r\n"

    def log_in(self, control, features: str = " SIZE\r\n", welcome: str = "220 rogue\r\n") -> None:
        """Welcome, USER, PASS, FEAT and TYPE I, answered as a plain server would."""
        self.send(control, welcome)
        answers = {"USER": "331 pass?\r\n", "PASS": "230 in\r\n",
                   "FEAT": f"211-Features:\r\n{features}211 End\r\n", "TYPE": "200 ok\r\n"}
        for expected in ("USER", "PASS", "FEAT", "TYPE"):
            verb = self.command().split(" ")[0].upper()
            assert verb == expected, f"expected {expected}, got {verb}"
            self.send(control, answers[verb])
