"""No hangs: a dead or silent rank ends the whole job within comm.timeout_s, with errors that
name the peer and the protocol stage. Real processes, real signals."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from multiproc import TINY, Torchrun, train_job, wait_for_iteration

pytestmark = pytest.mark.slow

TIMEOUT_S = 10
ENDLESS = [*TINY, "train.iterations=100000", "log.every=1", f"comm.timeout_s={TIMEOUT_S}"]


def test_killed_worker_ends_every_rank_with_an_error_naming_it(tmp_path: Path) -> None:
    job = train_job(tmp_path, 4, ENDLESS)
    try:
        wait_for_iteration(tmp_path / "run" / "metrics.jsonl", 5, timeout_s=120)
        killed_at = time.monotonic()
        job.signal(2, signal.SIGKILL)
        codes = job.wait(TIMEOUT_S + 20)
    finally:
        job.kill()
    assert time.monotonic() - killed_at < TIMEOUT_S, "a dead peer must be noticed at once, not at the timeout"
    assert codes[2] == -signal.SIGKILL
    assert codes[0] == 1 and codes[1] == 1 and codes[3] == 1, job.outputs()
    server = job.ranks[0].output
    assert re.search(r"rank 0: peer rank 2 failed during (training iteration|feedback of iteration) \d+", server), (
        server
    )
    for survivor in (1, 3):
        # The server went down after the failure; the other workers say where they were waiting.
        assert "peer rank 0 failed during" in job.ranks[survivor].output, job.outputs()


def test_silent_worker_ends_every_rank_at_the_timeout(tmp_path: Path) -> None:
    job = train_job(tmp_path, 4, ENDLESS)
    try:
        wait_for_iteration(tmp_path / "run" / "metrics.jsonl", 5, timeout_s=120)
        stopped_at = time.monotonic()
        job.signal(3, signal.SIGSTOP)  # alive but silent: only the timeout can tell
        codes = [rank.process.wait(timeout=TIMEOUT_S + 30) for rank in job.ranks[:3]]
        elapsed = time.monotonic() - stopped_at
    finally:
        job.kill()
    assert codes == [1, 1, 1], job.outputs()
    assert TIMEOUT_S - 1 <= elapsed <= TIMEOUT_S + 20
    assert re.search(
        rf"peer rank 3 failed during .*no answer within comm.timeout_s={TIMEOUT_S}s", job.ranks[0].output
    ), job.outputs()


def test_torchrun_exits_non_zero_when_a_worker_dies(tmp_path: Path) -> None:
    job = Torchrun(tmp_path, 3, ENDLESS)
    try:
        wait_for_iteration(job.run_dir / "metrics.jsonl", 5, timeout_s=120)
        os.kill(job.rank_pid(1), signal.SIGKILL)
        code = job.wait(TIMEOUT_S + 30)
    finally:
        job.kill()
    assert code != 0, job.output
    assert "peer rank 1 failed during" in job.output or re.search(r"rank\s*:\s*1", job.output), job.output
