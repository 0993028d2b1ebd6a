"""The fault injections of fault.* where they act: the crashes, stragglers, diverged discriminators
and full disks that the fault-tolerance tests and the crash study inject."""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def crash_if_scheduled(kill_at: int | None, rank: int, iteration: int) -> None:
    """fault.kill_worker: a real crash at the worker's scheduled iteration: SIGKILL, no exception, no clean-up."""
    if kill_at == iteration:
        log.warning("fault.kill_worker: rank %d kills itself at iteration %d", rank, iteration)
        os.kill(os.getpid(), signal.SIGKILL)


def straggle_if_scheduled(seconds: float | None) -> None:
    """fault.slow_worker: the worker sleeps before each answer (a straggler)."""
    if seconds is not None:
        time.sleep(seconds)


def diverge_if_scheduled(nan_at: int | None, rank: int, iteration: int, poison: Callable[[], None]) -> None:
    """fault.nan_worker: the worker's D turns NaN at its iteration, as a diverged one does."""
    if nan_at == iteration:
        log.warning("fault.nan_worker: rank %d turns its D NaN at iteration %d", rank, iteration)
        poison()


def disk_full_if_scheduled(fail_at: int | None, iteration: int, path: Path) -> None:
    """fault.checkpoint_error: the rank's checkpoint file of that iteration fails as on a full disk."""
    if fail_at == iteration:
        raise OSError(errno.ENOSPC, "No space left on device (fault.checkpoint_error)", str(path))
