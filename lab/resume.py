# ftpkit lab: starter code generated from the reference solution by
# `python -m solutions.generate`. Replace each `raise NotImplementedError(...)`
# with your code; lab/README.md says what each exercise asks for.
"""Transfers that start in the middle of a file: REST (RFC 3659 section 5) and APPE.

A download resumed at byte N sends the file from N on. An upload resumed at
byte N, or appended, must not write into the file in place: a client that
dies halfway would leave a file that is neither the old one nor the new.
So the kept part of the old file is copied into a hidden partial file
first, the new bytes follow, and the partial file replaces the old one only
when the upload is whole (helper.PartialFile), as for any other upload.
"""

from __future__ import annotations

from typing import Callable

from . import helper


def send_file_from(sock, path, offset: int) -> int:
    """A download resumed with REST: the file from byte ``offset`` on."""
    with open(path, "rb") as file:
        return sock.sendfile(file, offset)


def receive_after(sock, path, keep: int, expected_size: int | None,
                  still_wanted: Callable[[], bool] | None) -> int:
    """An upload resumed with REST, or an APPE: the first ``keep`` bytes of
    the old file, then what arrives, into a partial copy that replaces the
    file only when the upload is whole (helper.PartialFile)."""
    with helper.PartialFile(path) as partial, open(path, "rb") as old:
        remaining = keep
        while remaining:
            block = old.read(min(helper.BUFFER_SIZE, remaining))
            if not block:
                break                    # the old file shrank meanwhile: keep what there was
            partial.file.write(block)
            remaining -= len(block)
        received = helper.receive_into(sock, partial.file)
        if expected_size is not None and received != expected_size:
            raise helper.IncompleteTransfer(received, expected_size)
        if still_wanted is not None and not still_wanted():
            raise helper.IncompleteTransfer(received, None)
        partial.commit()
    return received
