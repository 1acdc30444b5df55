"""The transfers' bookkeeping: one :class:`Transfer` per file or listing,
matched from the client's and the server's records of it.

Each side logs a ``transfer_start`` and a ``transfer_end`` of its own for the
same transfer. :class:`trace.model.Session` hands them here; this module
pairs a side's end with its start, finds the record the other side's end
already made (or makes a new one), and at the end of the input records the
transfers that started and never ended. It keeps only the open starts and a
short window of recent transfers, so that memory stays flat on a log of any
length.
"""

from __future__ import annotations

from collections import deque

from .records import SERVER, Transfer

# The records kept for the summary's table. Past these, transfers are only
# counted (as the model does with connections and errors).
KEEP_TRANSFERS = 1000
# Transfers that may still be matched with the other side's record of them.
RECENT_TRANSFERS = 64


class TransferBook:
    """The transfers of one session: the first KEEP_TRANSFERS in ``transfers``,
    all of them in ``count``."""

    def __init__(self):
        self.transfers: list[Transfer] = []
        self.count = 0
        self._recent: deque[Transfer] = deque(maxlen=RECENT_TRANSFERS)
        self._started: dict[tuple, list] = {}      # open transfer_start times per side

    @staticmethod
    def _side(event, role) -> tuple:
        """Which side's transfer an event is about. A server process may be in
        several at once, one per client's control connection."""
        return (role, event["pid"], event.get("control"), event["command"], event["path"])

    def started(self, event, role: str, t: float) -> None:
        self._started.setdefault(self._side(event, role), []).append((t, event["direction"]))

    def ended(self, event, role: str, t: float, connection) -> None:
        """One side's transfer_end, on ``connection`` (None if it names none we know)."""
        command, path = event["command"], event["path"]
        nbytes, duration, verdict = event["bytes"], float(event["duration"]), event["verdict"]
        key = self._side(event, role)
        starts = self._started.get(key)
        # A log that began mid-transfer has no start: the end says how long it took.
        t_start = starts.pop(0)[0] if starts else t - duration
        if starts == []:
            del self._started[key]
        transfer = self._other_side_of(role, command, path, connection)
        if transfer is None:
            transfer = Transfer(command, path, event["direction"], t_start, connection)
            self._record(transfer)
        transfer.connection = transfer.connection or connection
        transfer.t_start = min(transfer.t_start, t_start)
        if role == SERVER:
            transfer.path = path                # the server names it in full
        transfer.sides[role] = {"bytes": nbytes, "duration": duration,
                                "sha256": event.get("sha256"), "verdict": verdict}

    def finish(self) -> None:
        """End of input: record transfers that started but never ended."""
        for (role, _pid, _control, command, path), starts in self._started.items():
            for t_start, direction in starts:
                if self._ended_by_other_side(role, command, t_start):
                    continue
                transfer = Transfer(command, path, direction, t_start, None)
                transfer.sides[role] = {"bytes": 0, "duration": 0.0, "sha256": None,
                                        "verdict": "unfinished"}
                self._record(transfer)
        self._started.clear()

    def _other_side_of(self, role, command, path, connection) -> Transfer | None:
        """The record the other side's transfer_end made for this same transfer.

        The data connection says it best. Failing that, the command and the
        path; the client may name the path relative (``a.bin``) where the
        server names it absolute (``/a.bin``).
        """
        for transfer in reversed(list(self._recent)[-8:]):
            if role in transfer.sides or transfer.command != command:
                continue
            if connection is not None and transfer.connection is connection:
                return transfer
            if (connection is None or transfer.connection is None) \
                    and transfer.path.lstrip("/") == path.lstrip("/"):
                return transfer
        return None

    def _ended_by_other_side(self, role, command, t_start) -> bool:
        """A side that logged no transfer_end, for a transfer the other side
        completed at the same time (within a second), did not leave it unfinished."""
        return any(transfer.command == command and role not in transfer.sides
                   and abs(transfer.t_start - t_start) < 1.0
                   for transfer in self._recent)

    def _record(self, transfer: Transfer) -> None:
        self.count += 1
        self._recent.append(transfer)
        if len(self.transfers) < KEEP_TRANSFERS:
            self.transfers.append(transfer)
