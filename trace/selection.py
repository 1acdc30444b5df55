"""What the user asked to see (``--channel``, ``--conn``), decided in one place.

The diagram asks it of steps, the summary of connections, transfers and
errors, and ``--json`` of raw events; they all make the same choice.
"""

from __future__ import annotations


class Selection:
    """One channel, one connection (its ``#N``), or everything."""

    def __init__(self, channel: str | None = None, conn: int | None = None):
        self.channel, self.conn = channel, conn

    def _on_conn(self, connection) -> bool:
        return connection is not None and connection.number == self.conn

    def connection(self, connection) -> bool:
        if self.conn is not None:
            return connection.number == self.conn
        return self.channel is None or connection.channel == self.channel

    def step(self, step) -> bool:
        if self.conn is not None:
            return self._on_conn(step.connection)
        # Notes that belong to no channel (process starts, errors) give context.
        return self.channel is None or step.channel in (self.channel, None)

    def transfer(self, transfer) -> bool:
        if self.channel == "control":
            return False                   # transfers are data
        return self.conn is None or self._on_conn(transfer.connection)

    def error(self, error) -> bool:
        if self.conn is not None and not self._on_conn(error.connection):
            return False
        return (self.channel is None or error.connection is None
                or error.connection.channel == self.channel)

    def event(self, event, session) -> bool:
        """A raw event, for ``--json`` (``session`` has been fed it)."""
        kind = event.get("type")
        if kind == "header":
            return True                    # keeps the output a valid log
        if self.conn is not None:
            return self._on_conn(session.connection_of(event))
        if self.channel is not None:
            channel = "data" if kind in ("transfer_start", "transfer_end") else event.get("channel")
            return channel in (self.channel, None)
        return True
