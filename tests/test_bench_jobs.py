"""bench/jobs.py's runner on this machine's loopback: a job past its timeout ends with every rank
that torchrun started (they run in sessions of their own, out of reach of a group signal)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from jobs import Runner, Spec
from multiproc import TINY, trainer_processes

pytestmark = pytest.mark.slow


def test_a_torchrun_job_past_its_timeout_is_ended_with_every_rank(tmp_path: Path) -> None:
    runner = Runner(100000, TINY, [], tmp_path, timeout_s=40)
    with pytest.raises(subprocess.TimeoutExpired):
        runner(Spec("mdgan", 2, ("comm.timeout_s=60",)))
    run_dir = next(tmp_path.glob("*-mdgan-n2"))
    assert (run_dir / "metrics.jsonl").exists()  # it trained before the timeout ended it
    assert not trainer_processes(run_dir)
