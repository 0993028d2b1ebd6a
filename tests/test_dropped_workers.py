"""The paper's crash scenario: with fault.tolerate_worker_loss the server drops a dead or silent
worker and trains on with the others (without it the job fails fast: test_failures.py). Real
processes, real kills."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest
import torch

from multiproc import TINY, metrics, train_job, wait_for_iteration

pytestmark = pytest.mark.slow

ITERATIONS = 25
B, D, VALUE, HEADER = 16, 28 * 28, 4, 64
STATISTICS = 2 * 8  # a worker's D and G loss in float64, in its feedback packet
# Swaps every 2 iterations (shards of 1,125, b = 16), a checkpoint every 10.
COMMON = [*TINY, f"train.iterations={ITERATIONS}", "log.every=1", "mdgan.swap_every_epochs=0.02", "checkpoint.every=10"]


def crash_two_workers(tmp_path: Path, overrides: list[str], stage: str, first: int, second: int) -> list[dict]:
    """1 server + 4 workers, lost workers tolerated, rank 2 killed at iteration `first` and rank 4 at
    `second`: checks the exit codes, the server's log of both drops, workers.json and the final
    model; returns the run's metrics."""
    crashes = ["fault.tolerate_worker_loss=true", f"fault.kill_worker=[2@{first},4@{second}]"]
    job = train_job(tmp_path, 5, [*overrides, *crashes])
    codes = job.wait(180)
    assert codes == [0, 0, -signal.SIGKILL, 0, -signal.SIGKILL], job.outputs()
    for rank, iteration, left in ((2, first, 3), (4, second, 2)):
        dropped = rf"dropped worker rank {rank} during {stage} {iteration}: {left} workers left"
        assert re.search(dropped, job.ranks[0].output), job.ranks[0].output
    summary = json.loads((tmp_path / "run" / "workers.json").read_text())
    assert summary["live"] == [1, 3] and [d["rank"] for d in summary["dropped"]] == [2, 4]
    assert (tmp_path / "run" / "generator.pt").exists()
    run = metrics(tmp_path / "run")
    assert [r["iteration"] for r in run] == list(range(1, ITERATIONS + 1))
    return run


def test_workers_killed_one_after_another_are_dropped_and_training_goes_on(tmp_path: Path) -> None:
    """A crash schedule (fault.kill_worker takes a list): rank 2 dies at iteration 8, rank 4 at 14."""
    run = crash_two_workers(tmp_path, COMMON, "training iteration", 8, 14)
    for r in run:
        live = 4 if r["iteration"] <= 8 else 3 if r["iteration"] <= 14 else 2  # iteration 8 (0-based) is the 9th
        assert len(r["d_loss_per_worker"]) == live, r
        assert r["server_bytes_recv"] == live * (B * D * VALUE + STATISTICS + HEADER), r
    # Swaps went on among the live workers.
    assert run[-1]["swaps"] > run[14]["swaps"] > run[8]["swaps"] > 0
    last_checkpoint = tmp_path / "run" / "checkpoints" / "iteration_00000025"
    assert sorted(p.name.split("-")[0] for p in last_checkpoint.glob("rank*.pt")) == ["rank1", "rank3"]


def test_killed_process_of_several_workers_drops_them_all_and_training_goes_on(tmp_path: Path) -> None:
    """mdgan.workers_per_rank=2: 6 workers on 3 processes; rank 2 dies with its 2 workers, the 4 left
    swap on, in memory and between the 2 live processes."""
    overrides = [*COMMON, "mdgan.workers_per_rank=2", "fault.tolerate_worker_loss=true", "fault.kill_worker=2@8"]
    job = train_job(tmp_path, 4, overrides)
    codes = job.wait(180)
    assert codes == [0, 0, -signal.SIGKILL, 0], job.outputs()
    assert re.search(r"dropped worker rank 2 during training iteration 8: 4 workers left", job.ranks[0].output)
    run = metrics(tmp_path / "run")
    assert [r["iteration"] for r in run] == list(range(1, ITERATIONS + 1))
    for r in run:
        processes = 3 if r["iteration"] <= 8 else 2
        assert r["feedbacks_used"] == 2 * processes == len(r["d_loss_per_worker"]), r
        assert r["server_bytes_recv"] == processes * (2 * (B * D * VALUE + STATISTICS) + HEADER), r
    assert run[-1]["swaps"] > run[8]["swaps"] > 0
    last_checkpoint = tmp_path / "run" / "checkpoints" / "iteration_00000025"
    assert sorted(p.name.split("-")[0] for p in last_checkpoint.glob("rank*.pt")) == ["rank1", "rank3"]
    assert (tmp_path / "run" / "generator.pt").exists()


def test_silent_worker_is_dropped_at_the_timeout(tmp_path: Path) -> None:
    # Worker 1 sleeps 0.1 s before each feedback: the 95 iterations after the 5th take 9.5 s at least,
    # so the stop lands mid-run however loaded the machine is.
    timeout_s, iterations = 8, 100
    overrides = [
        *COMMON, f"train.iterations={iterations}", "fault.tolerate_worker_loss=true", f"comm.timeout_s={timeout_s}",
        "fault.slow_worker=1@0.1",
    ]  # fmt: skip
    job = train_job(tmp_path, 4, overrides)
    try:
        wait_for_iteration(tmp_path / "run" / "metrics.jsonl", 5, timeout_s=120)
        job.signal(3, signal.SIGSTOP)
        codes = [rank.process.wait(timeout=240) for rank in job.ranks[:3]]
    finally:
        job.kill()
    assert codes == [0, 0, 0], job.outputs()
    assert re.search(
        rf"dropped worker rank 3 during .*no answer within (2 x )?comm.timeout_s={timeout_s}s", job.ranks[0].output
    )
    assert metrics(tmp_path / "run")[-1]["iteration"] == iterations


def test_flgan_drops_killed_workers_and_averages_over_the_others(tmp_path: Path) -> None:
    """FL-GAN with fault.tolerate_worker_loss: FedAvg over the workers left. Rank 2 dies at local
    iteration 6, rank 4 at 12; the run finishes, and the two live workers end with the same models
    (the last iteration ends with an averaging)."""
    overrides = [
        *TINY, "algorithm=flgan", f"train.iterations={ITERATIONS}", "log.every=1", "flgan.sync_every_epochs=0.02"
    ]  # fmt: skip
    run = crash_two_workers(tmp_path, overrides, "local iteration", 6, 12)
    assert [len(r["d_loss_per_worker"]) for r in run] == [4] * 6 + [3] * 6 + [2] * (ITERATIONS - 12)
    assert run[-1]["syncs"] > run[12]["syncs"] > run[6]["syncs"] > 0
    first, third = (torch.load(tmp_path / "run" / f"models_rank{rank}.pt") for rank in (1, 3))
    for part in ("generator", "discriminator"):
        assert all(torch.equal(first[part][key], third[part][key]) for key in first[part]), part
