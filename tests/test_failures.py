"""No hangs: a dead or silent rank ends the whole job within comm.timeout_s, with errors that
name the peer and the protocol stage. Real processes, real signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from multiproc import TINY, free_port, train_job, wait_for_iteration

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


def _rank_pid(run_dir: Path, rank: int) -> int | None:
    """The pid of the trainer process with this RANK whose command line names this run."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if "mdgan_dist.train" in cmdline and str(run_dir) in cmdline and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def test_torchrun_exits_non_zero_when_a_worker_dies(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=3",
        f"--master-port={free_port()}",
        "-m",
        "mdgan_dist.train",
        *ENDLESS,
        f"run.dir={run_dir}",
    ]
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    with open(tmp_path / "torchrun.log", "wb") as log:
        torchrun = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_iteration(run_dir / "metrics.jsonl", 5, timeout_s=120)
        pid = _rank_pid(run_dir, 1)
        assert pid is not None, "worker rank 1 not found"
        os.kill(pid, signal.SIGKILL)
        code = torchrun.wait(timeout=TIMEOUT_S + 30)
    finally:
        if torchrun.poll() is None:
            torchrun.kill()
    output = (tmp_path / "torchrun.log").read_text(errors="replace")
    assert code != 0, output
    assert "peer rank 1 failed during" in output or re.search(r"rank\s*:\s*1", output), output
