"""fault.kill_worker on the worker side: the crash that the fault-tolerance tests and the crash
study inject."""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)


def crash_if_scheduled(kill_at: int | None, rank: int, iteration: int) -> None:
    """A real crash at the worker's scheduled iteration: SIGKILL, no exception, no clean-up."""
    if kill_at == iteration:
        log.warning("fault.kill_worker: rank %d kills itself at iteration %d", rank, iteration)
        os.kill(os.getpid(), signal.SIGKILL)
