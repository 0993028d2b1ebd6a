"""Timing compute in this process: the median over repetitions after a warm-up."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from jobs import WARM_UP


def median_seconds(step: Callable[[], None], repetitions: int, clock: Callable[[], float]) -> float:
    """Median seconds of `step` by `clock`, after a warm-up of 10% of the repetitions (at least 2)."""
    for _ in range(max(2, int(repetitions * WARM_UP))):
        step()
    times = []
    for _ in range(repetitions):
        started = clock()
        step()
        times.append(clock() - started)
    return statistics.median(times)
