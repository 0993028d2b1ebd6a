"""How durations and figures read in status lines and tables (results.md, the benchmarks)."""

from __future__ import annotations

MIB = 2**20


def duration(seconds: float) -> str:
    """1h02m03s, 4m05s or 12s."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def number(value: float) -> str:
    """A score: three decimals, or three significant digits where decimals would read 0.00x."""
    return f"{value:.3g}" if abs(value) < 0.01 else f"{value:.3f}"


def ms(seconds: float) -> str:
    """Seconds as milliseconds, two decimals."""
    return f"{seconds * 1e3:.2f}"


def one_decimal(value: float) -> str:
    return f"{value:.1f}"


def ratio(value: float) -> str:
    return f"{value:.3f}"


def exact_ratio(value: float) -> str:
    """Six decimals: enough to show that a ratio is exactly 1."""
    return f"{value:.6f}"


def integer(value: int) -> str:
    """With thousands separators."""
    return f"{value:,}"


def mib(value: int) -> str:
    """Bytes as MiB, one decimal."""
    return f"{value / MIB:.1f}"
