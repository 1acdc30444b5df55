"""Numbers as people read them: bytes, rates and durations."""

from __future__ import annotations


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KiB' (binary units, as file sizes are counted)."""
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def format_rate(bytes_per_second: float) -> str:
    return format_bytes(int(bytes_per_second)) + "/s"


def format_duration(seconds: float) -> str:
    """Seconds as ms below one second (loopback transfers are that quick)."""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"
