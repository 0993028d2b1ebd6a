"""How durations and figures read in status lines and tables."""

from __future__ import annotations


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
