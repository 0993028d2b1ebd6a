"""mdgan.real_ahead: a worker computes the real half of its next D step while the next batches
travel. It must change no number: every run below ends bit for bit where the same run without it
does, its metrics equal, and the workers say how many real halves they computed ahead."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from multiproc import TINY, assert_same_final_models, metrics, run_job, without_timings

pytestmark = pytest.mark.slow

ITERATIONS = 8
# Each case: its processes, its settings, and how many real halves each worker process computes
# ahead. A worker computes one after every iteration no control message follows (a swap or
# checkpoint order, the stop), the last one included: ITERATIONS - 1 where none comes early.
CASES = {
    # Swaps every 2 iterations (shards of 1,500 at b = 16), checkpoints every 3: control messages
    # follow iterations 2, 3, 4, 6 and 8, so only iterations 1, 5 and 7 are followed by a TRAIN.
    # The augmentation's stream is drawn from ahead of time as well.
    "swaps-checkpoints-augment": (
        4,
        ["mdgan.swap_every_epochs=0.02", "checkpoint.every=3", "gan.augment='translation,cutout'"],
        3,
    ),
    # Two workers a process, DP-SGD's Poisson samples and noise drawn ahead, two D steps (the
    # second's real half is not ahead), and batches sent ahead (mdgan.overlap).
    "packed-private-L2-overlap": (
        3,
        [
            "mdgan.workers_per_rank=2",
            "mdgan.swap_every_epochs=0",
            "privacy.epsilon=20",
            "privacy.noise_multiplier=0.8",
            "privacy.secret_noise=false",
            "gan.disc_steps=2",
            "mdgan.overlap=true",
        ],
        ITERATIONS - 1,
    ),
    # The R1 penalty (a double backward on the real half), projection, a free-rider whose D is put
    # back after each step, one real batch for both D steps.
    "r1-projection-free-rider": (
        4,
        [
            "mdgan.swap_every_epochs=0",
            "gan.r1=1.0",
            "gan.conditioning=projection",
            "gan.disc_steps=2",
            "gan.reuse_real_batch=true",
            "fault.byzantine_worker=2@lazy",
        ],
        ITERATIONS - 1,
    ),
}


def both_ways(tmp: Path, processes: int, settings: list[str]) -> tuple[Path, Path]:
    """The same run without and with mdgan.real_ahead."""
    runs = []
    for ahead in (False, True):
        folder = tmp / f"ahead-{ahead}"
        folder.mkdir()
        overrides = [*TINY, "log.every=1", f"train.iterations={ITERATIONS}", *settings, f"mdgan.real_ahead={ahead}"]
        runs.append(run_job(folder, processes, overrides))
    return runs[0], runs[1]


def halves_ahead(run_dir: Path, processes: int) -> list[int]:
    stats = [json.loads((run_dir / f"stats_rank{rank}.json").read_text()) for rank in range(1, processes)]
    return [worker["real_halves_ahead"] for worker in stats]


@pytest.mark.parametrize("case", CASES)
def test_real_halves_computed_ahead_change_no_number(tmp_path: Path, case: str) -> None:
    processes, settings, ahead = CASES[case]
    plain, early = both_ways(tmp_path, processes, settings)
    assert halves_ahead(plain, processes) == [0] * (processes - 1)
    assert halves_ahead(early, processes) == [ahead] * (processes - 1)
    assert_same_final_models(early, plain)
    assert without_timings(metrics(early)) == without_timings(metrics(plain))


def test_a_worker_dropped_with_a_real_half_ahead_leaves_cleanly(tmp_path: Path) -> None:
    """The outlier watch drops an amplifying liar after 3 iterations: it is sent a STOP where it
    expects a TRAIN, with a real half already computed. It leaves, the others finish, and nothing
    differs from the run without real halves ahead."""
    settings = [
        "mdgan.swap_every_epochs=0",
        "mdgan.aggregate=median",
        "mdgan.k=1",
        "fault.byzantine_worker=3@amplify",
        "mdgan.outlier_iterations=3",
        "fault.tolerate_worker_loss=true",
    ]
    plain, early = both_ways(tmp_path, 4, settings)
    for run in (plain, early):
        assert "worker 2 (rank 3, slot 0) named at iteration 2" in (run.parent / "rank0.log").read_text()
    assert halves_ahead(early, 4) == [ITERATIONS - 1] * 2 + [3]  # the liar's third met the STOP
    assert_same_final_models(early, plain)
    assert without_timings(metrics(early)) == without_timings(metrics(plain))


def test_a_run_resumes_with_real_ahead_switched_bit_identical(tmp_path: Path) -> None:
    """real_ahead is no part of the trajectory: 4 iterations without it, resumed to 8 with it,
    end where 8 with it do, checkpoints every 2 iterations."""
    settings = [*TINY, "log.every=1", "checkpoint.every=2", "mdgan.swap_every_epochs=0.02"]
    runs = {}
    for name, iterations, ahead in (("straight", ITERATIONS, True), ("half", ITERATIONS // 2, False)):
        (tmp_path / name).mkdir()
        overrides = [*settings, f"train.iterations={iterations}", f"mdgan.real_ahead={ahead}"]
        runs[name] = run_job(tmp_path / name, 4, overrides)
    shutil.copytree(runs["half"], tmp_path / "resumed" / "run")
    for final in (tmp_path / "resumed" / "run").glob("*.pt"):  # what the resumed run writes
        final.unlink()
    resumed = run_job(tmp_path / "resumed", 4, [*settings, f"train.iterations={ITERATIONS}", "mdgan.real_ahead=true"])
    assert (
        f"at iteration {ITERATIONS // 2}" in (tmp_path / "resumed" / "rank0.log").read_text()
    )  # resumed, not restarted
    assert_same_final_models(resumed, runs["straight"])
    assert without_timings(metrics(resumed)) == without_timings(metrics(runs["straight"]))
