"""Lying workers end to end: the server's outlier watch (mdgan.outlier_iterations) names the worker
process that keeps sending far-off feedback, never an honest one, and with
fault.tolerate_worker_loss drops it, tells it to stop and trains on. What each lie computes, and
the robust rules against the single-process reference, the oracle checks (tests/conftest.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mdgan_dist.algorithms.mdgan.outliers import OUTLIER_RATIO
from multiproc import TINY, metrics, train_job

pytestmark = pytest.mark.slow

ITERATIONS = 8
STREAK = 3  # named after iterations 0, 1 and 2: at iteration 2
COMMON = [
    *TINY,
    f"train.iterations={ITERATIONS}",
    "log.every=1",
    "mdgan.k=1",
    "mdgan.aggregate=median",
    f"mdgan.outlier_iterations={STREAK}",
    "mdgan.swap_every_epochs=0",
]


def named(server_log: str) -> list[tuple[int, int]]:
    """(rank, slot) of every worker the server named."""
    return [(int(r), int(s)) for r, s in re.findall(r"worker \d+ \(rank (\d+), slot (\d+)\) named at", server_log)]


@pytest.mark.parametrize(
    "processes, layout, liar, slots",
    [
        # The liar's next message is a packet (no control message follows iteration 2).
        (6, [], "5", [0]),
        # Two workers per process, the second of rank 3 lying beside an honest one: the server names
        # it and drops its process, both workers. A checkpoint after iteration 2, so the process
        # waits for a bare header, and its stop comes as one.
        (4, ["mdgan.workers_per_rank=2", "checkpoint.every=3"], "3:1", [1]),
    ],
    ids=["one-per-process", "one-of-two-per-process-checkpoint"],
)
def test_a_lying_process_is_named_dropped_and_stopped_and_training_goes_on(
    tmp_path: Path, processes: int, layout: list[str], liar: str, slots: list[int]
) -> None:
    overrides = [*COMMON, *layout, "fault.tolerate_worker_loss=true", f"fault.byzantine_worker={liar}@amplify"]
    job = train_job(tmp_path, processes, overrides)
    assert job.wait(180) == [0] * processes, job.outputs()
    server = job.ranks[0].output
    per_rank, liar = (2 if layout else 1), int(liar.split(":")[0])
    assert named(server) == [(liar, slot) for slot in slots], server
    assert f"named at iteration {STREAK - 1}: its feedback lay" in server and "dropping its process" in server
    summary = json.loads((tmp_path / "run" / "workers.json").read_text())
    assert [d["rank"] for d in summary["dropped"]] == [liar]
    assert summary["dropped"][0]["stage"] == f"outlier watch at iteration {STREAK - 1}"
    run = metrics(tmp_path / "run")
    workers = (processes - 1) * per_rank
    # The named iteration's step already leaves out the feedback of the liar's whole process.
    assert [r["feedbacks_used"] for r in run] == [workers] * (STREAK - 1) + [workers - per_rank] * (
        ITERATIONS - STREAK + 1
    )
    assert [r["workers_named"] for r in run] == [0] * (STREAK - 1) + [len(slots)] * (ITERATIONS - STREAK + 1)
    # The liar stopped as at a stop request: its stats, no final discriminators; the others finished.
    stats = json.loads((tmp_path / "run" / f"stats_rank{liar}.json").read_text())
    assert stats["iterations_trained"] == STREAK
    finals = sorted(path.name for path in (tmp_path / "run").glob("discriminator_rank*.pt"))
    assert finals == [f"discriminator_rank{rank}.pt" for rank in range(1, processes) if rank != liar]


def test_without_tolerance_the_liar_is_named_and_kept_and_no_honest_worker_is_named(tmp_path: Path) -> None:
    job = train_job(tmp_path, 6, [*COMMON, "fault.byzantine_worker=3@amplify"])
    assert job.wait(180) == [0] * 6, job.outputs()
    server = job.ranks[0].output
    assert named(server) == [(3, 0)] and "dropping" not in server
    run = metrics(tmp_path / "run")
    assert [r["feedbacks_used"] for r in run] == [5] * ITERATIONS
    assert run[-1]["workers_named"] == 1
    assert all(r["outlier_ratio_max"] > OUTLIER_RATIO for r in run)  # the 100x liar, every iteration


def test_an_honest_run_names_nobody(tmp_path: Path) -> None:
    job = train_job(tmp_path, 6, COMMON)
    assert job.wait(180) == [0] * 6, job.outputs()
    assert named(job.ranks[0].output) == []
    assert metrics(tmp_path / "run")[-1]["workers_named"] == 0
