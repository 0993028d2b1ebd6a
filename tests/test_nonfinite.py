"""The non-finite guard with real processes, for every algorithm: a D that diverges
(fault.nan_worker) stops the run with an error naming the rank, the iteration and the quantity,
before G steps on it; no checkpoint holds a NaN, so resume=auto continues from the last good one.
With fault.tolerate_worker_loss the MD-GAN server drops that worker and goes on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from mdgan_dist.checkpoint import MANIFEST, checkpoints_root
from mdgan_dist.checkpoint import load as load_file
from multiproc import TINY, metrics, train_job

pytestmark = pytest.mark.slow

COMMON = [*TINY, "train.iterations=10", "log.every=1", "checkpoint.every=2"]
# MD-GAN swaps, so that its checkpoints hold swapped discriminators; the others refuse mdgan.*.
ALGORITHM = {
    "mdgan": ["mdgan.swap_every_epochs=0.02"],
    "flgan": ["algorithm=flgan"],
    "standalone": ["algorithm=standalone"],
}
DIVERGES = "fault.nan_worker=2@5"  # worker rank 2 (worker 1) at iteration 5 (0-based): the 6th
# Per algorithm: its processes, the rank whose D diverges (the standalone GAN's one D is named as
# MD-GAN's with one worker: rank 1), the rank that reports it, what it says, what the server says.
DIVERGING = {
    "mdgan": (
        4,
        2,
        2,
        "the D loss of worker 1",
        r"peer rank 2 failed during (training iteration|feedback of iteration) 5",
    ),
    "flgan": (4, 2, 2, "the D loss of worker 1", r"peer rank 2 failed during local iteration 5"),
    "standalone": (1, 1, 0, "the D loss of worker 0", None),
}


def floating(state: object) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state] if state.is_floating_point() else []
    if isinstance(state, dict):
        return [tensor for value in state.values() for tensor in floating(value)]
    if isinstance(state, list | tuple):
        return [tensor for value in state for tensor in floating(value)]
    return []


@pytest.mark.parametrize("algorithm", DIVERGING)
def test_a_diverged_worker_stops_the_run_and_resume_continues_from_the_last_good_checkpoint(
    tmp_path: Path, algorithm: str
) -> None:
    processes, diverging, reporting, quantity, server_says = DIVERGING[algorithm]
    common = [*COMMON, *ALGORITHM[algorithm]]
    job = train_job(tmp_path, processes, [*common, f"fault.nan_worker={diverging}@5"])
    codes = job.wait(120)
    assert codes[reporting] == 1 and codes[0] != 0, job.outputs()
    said = job.ranks[reporting].output
    assert f"rank {reporting}: {quantity} at iteration 5 is not finite" in said, job.outputs()
    assert server_says is None or re.search(server_says, job.ranks[0].output)
    assert "Traceback" not in said  # the trainer's error, not a crash
    complete = sorted(path.parent.name for path in checkpoints_root(tmp_path / "run").glob(f"*/{MANIFEST}"))
    assert complete == ["iteration_00000002", "iteration_00000004"]
    for path in (checkpoints_root(tmp_path / "run") / complete[-1]).glob("*.pt"):
        assert all(bool(torch.isfinite(t).all()) for t in floating(load_file(path, torch.device("cpu")))), path
    # The same run without the fault, started again, continues from iteration 4 and finishes.
    resumed = train_job(tmp_path, processes, common)
    assert resumed.wait(120) == [0] * processes, resumed.outputs()
    assert "at iteration 4" in resumed.ranks[0].output
    assert [r["iteration"] for r in metrics(tmp_path / "run")] == list(range(1, 11))


def test_with_lost_workers_tolerated_the_diverged_worker_is_dropped(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    job = train_job(
        tmp_path, 4, [*COMMON, *ALGORITHM["mdgan"], DIVERGES, "fault.tolerate_worker_loss=true", "comm.timeout_s=10"]
    )
    codes = job.wait(120)
    assert codes[0] == codes[1] == codes[3] == 0 and codes[2] == 1, job.outputs()
    summary = json.loads((run_dir / "workers.json").read_text())
    assert summary["live"] == [1, 3] and [d["rank"] for d in summary["dropped"]] == [2]
    records = metrics(run_dir)
    assert [r["iteration"] for r in records] == list(range(1, 11))
    assert all(r["feedbacks_used"] == (3 if r["iteration"] <= 5 else 2) for r in records)
    generator = load_file(run_dir / "generator.pt", torch.device("cpu"))
    assert all(bool(torch.isfinite(t).all()) for t in floating(generator))
