"""Elastic restart, for MD-GAN and FL-GAN: torchrun --max-restarts restarts the group after a
SIGKILL, the run resumes from its newest complete checkpoint and ends exactly where an
uninterrupted run ends."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from multiproc import TINY, Torchrun, assert_same_final_models, metrics, run_job, train_job, wait_for_iteration

pytestmark = pytest.mark.slow

ITERATIONS = 40
# A checkpoint every 5 iterations; MD-GAN swaps every 5, FL-GAN averages every 5.
COMMON = [*TINY, f"train.iterations={ITERATIONS}", "log.every=1", "checkpoint.every=5", "gan.disc_steps=4",
          "comm.timeout_s=30"]  # fmt: skip
ALGORITHMS = {
    "mdgan": ["mdgan.swap_every_epochs=0.05"],
    "flgan": ["algorithm=flgan", "flgan.sync_every_epochs=0.05"],
}
# The interrupted runs: a worker sleeps 0.25 s before each answer, so the 16 or more iterations
# left after a kill or a stop request take 4 s at least, whatever the load on the machine, and the
# test always acts mid-run. The sleep changes no number (fault.* may change on resume).
PACE = "fault.slow_worker=1@0.25"


@pytest.fixture(scope="module", params=list(ALGORITHMS))
def algorithm(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def common(algorithm: str) -> list[str]:
    return [*COMMON, *ALGORITHMS[algorithm]]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, common: list[str]) -> Path:
    return run_job(tmp_path_factory.mktemp("straight"), 4, common)


def test_sigkill_restarts_the_group_and_the_run_resumes_exactly(
    tmp_path: Path, common: list[str], uninterrupted: Path
) -> None:
    """The server killed, then a worker of the restarted group: one job, two restarts."""
    kills = [(0, 12), (2, 24)]  # (rank, after iteration); a checkpoint every 5 iterations
    job = Torchrun(tmp_path, 4, [*common, PACE], ["--max-restarts=2", "--monitor-interval=0.5"])
    try:
        for victim, iteration in kills:
            # After a restart metrics.jsonl holds only the resumed records: this waits for the new group.
            wait_for_iteration(job.run_dir / "metrics.jsonl", iteration, timeout_s=120)
            os.kill(job.rank_pid(victim), signal.SIGKILL)
        code = job.wait(240)
    finally:
        job.kill()
    assert code == 0, job.output[-5000:]
    resumed_at = [line for line in job.output.splitlines() if "INFO resuming from" in line]
    assert len(resumed_at) == len(kills) and all("at iteration" in line for line in resumed_at), job.output[-5000:]
    for line, (_, iteration) in zip(resumed_at, kills):
        start = int(line.rsplit(" ", 1)[1])
        assert start >= iteration - iteration % 5 and start % 5 == 0  # nothing in a complete checkpoint was lost
    iterations = [record["iteration"] for record in metrics(job.run_dir)]
    assert iterations == list(range(1, ITERATIONS + 1))  # each once: the replayed ones replaced
    assert_same_final_models(job.run_dir, uninterrupted)


def test_stop_request_checkpoints_and_ends_cleanly_then_resumes(
    tmp_path: Path, common: list[str], uninterrupted: Path
) -> None:
    """`touch <run dir>/STOP` (what the SLURM script does before the time limit)."""
    job = train_job(tmp_path, 4, [*common, PACE])
    try:
        wait_for_iteration(tmp_path / "run" / "metrics.jsonl", 12, timeout_s=120)
        (tmp_path / "run" / "STOP").touch()
        codes = job.wait(120)
    finally:
        job.kill()
    assert codes == [0] * 4, job.outputs()
    stopped = metrics(tmp_path / "run")[-1]["iteration"]
    assert 12 <= stopped < ITERATIONS
    assert f"stop requested: checkpoint of iteration {stopped} written" in job.ranks[0].output
    assert (tmp_path / "run" / "checkpoints" / f"iteration_{stopped:08d}" / "MANIFEST.json").exists()
    assert not (tmp_path / "run" / "STOP").exists()
    assert not list((tmp_path / "run").glob("*.pt")), "final models written by a run that only stopped"
    assert_same_final_models(run_job(tmp_path, 4, common), uninterrupted)
