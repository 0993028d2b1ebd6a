"""Checkpoints and exact resume, for every algorithm: T iterations, then resumed to 2T, equal 2T at
once, bit for bit."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from mdgan_dist.checkpoint import MANIFEST, SERVER_FILE, checkpoint_dir
from multiproc import TINY, assert_same_final_models, metrics, run_job, train_job, without_timings

pytestmark = pytest.mark.slow

WORKERS = 3
T = 6
# A checkpoint every 3 iterations: two fall inside each half. The augmentation's stream is part of
# what a checkpoint must restore.
COMMON = [*TINY, "log.every=1", "checkpoint.every=3", "gan.augment='translation,cutout'"]
# Each algorithm: its processes and its own settings. MD-GAN swaps every 2 iterations (shards of
# 1,500, b = 16). FL-GAN averages every 4, so its first half ends between two averagings, with
# the averaging that ends a run, which the resumed run must not see.
ALGORITHMS = {
    "mdgan": (WORKERS + 1, ["mdgan.swap_every_epochs=0.02"]),
    "flgan": (WORKERS + 1, ["algorithm=flgan", "flgan.sync_every_epochs=0.04"]),
    "standalone": (1, ["algorithm=standalone"]),
}


def settings(algorithm: str, iterations: int, extra: Sequence[str] = ()) -> tuple[int, list[str]]:
    """The processes and overrides of a run of `iterations` of the algorithm."""
    processes, own = ALGORITHMS[algorithm]
    return processes, [*COMMON, *own, f"train.iterations={iterations}", *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Callable[[str, int], Path]:
    """The run directory of `iterations` of an algorithm in one go, made once per module: 2T is
    the reference, T the checkpoints a resumed run starts from."""
    made: dict[tuple[str, int], Path] = {}

    def run(algorithm: str, iterations: int) -> Path:
        if (algorithm, iterations) not in made:
            tmp = tmp_path_factory.mktemp(f"{algorithm}-{iterations}")
            made[algorithm, iterations] = run_job(tmp, *settings(algorithm, iterations))
        return made[algorithm, iterations]

    return run


def straight_and_resumed(
    tmp: Path, processes: int, overrides: list[str], half: int = T, whole: int = 2 * T
) -> tuple[Path, Path]:
    """The run directories of `whole` iterations in one go (tmp/straight/run) and of the same
    resumed from the checkpoint of a run of `half` (tmp/half/run, copied to tmp/resumed/run without
    its final models)."""
    for folder in ("straight", "half", "resumed"):
        (tmp / folder).mkdir()
    straight = run_job(tmp / "straight", processes, [*overrides, f"train.iterations={whole}"])
    first = run_job(tmp / "half", processes, [*overrides, f"train.iterations={half}"])
    shutil.copytree(first, tmp / "resumed" / "run")
    for final in (tmp / "resumed" / "run").glob("*.pt"):  # what the resumed run writes, not the first half's
        final.unlink()
    return straight, run_job(tmp / "resumed", processes, [*overrides, f"train.iterations={whole}"])


def resume(tmp: Path, algorithm: str, first_half: Path, extra: Sequence[str] = ()) -> Path:
    """A copy of the first half's run directory, continued to 2T."""
    shutil.copytree(first_half, tmp / "run")
    return run_job(tmp, *settings(algorithm, 2 * T, extra))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(
    tmp_path: Path, finished: Callable[[str, int], Path], algorithm: str
) -> None:
    uninterrupted = finished(algorithm, 2 * T)
    resumed = resume(tmp_path, algorithm, finished(algorithm, T))
    assert_same_final_models(resumed, uninterrupted)
    # The second half logged the same losses, swaps and bytes; the first half's records were kept.
    assert without_timings(metrics(resumed)) == without_timings(metrics(uninterrupted))
    # Checkpoints at 3, 6, 9, 12; keep=2 leaves the newest two.
    kept = sorted(p.name for p in (resumed / "checkpoints").iterdir())
    assert kept == ["iteration_00000009", "iteration_00000012"]
    assert all((resumed / "checkpoints" / name / MANIFEST).exists() for name in kept)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_stop_request_checkpoints_and_the_next_start_ends_bit_identical(
    tmp_path: Path, finished: Callable[[str, int], Path], algorithm: str
) -> None:
    """`touch <run dir>/STOP` before the start: the run stops after its first iteration, with a
    checkpoint and no final models; started again (resume=auto) it ends as an uninterrupted run."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "STOP").touch()
    stopped = run_job(tmp_path, *settings(algorithm, 2 * T))
    assert (checkpoint_dir(stopped, 1) / MANIFEST).exists() and not (stopped / "STOP").exists()
    assert not list(stopped.glob("*.pt")), "final models written by a run that only stopped"
    assert_same_final_models(run_job(tmp_path, *settings(algorithm, 2 * T)), finished(algorithm, 2 * T))


def test_checkpoint_names_show_which_discriminator_each_worker_holds(finished: Callable[[str, int], Path]) -> None:
    directory = checkpoint_dir(finished("mdgan", T), T)
    holders = sorted(p.name for p in directory.glob("rank*-holds-D*.pt"))
    assert len(holders) == WORKERS
    held = sorted(int(name.split("-D")[1].removesuffix(".pt")) for name in holders)
    assert held == list(range(WORKERS))  # every D is held by exactly one worker
    assert any(not name.startswith(f"rank{int(name.split('-D')[1][0]) + 1}-") for name in holders), "swaps happened"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_torn_newest_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, finished: Callable[[str, int], Path], algorithm: str
) -> None:
    shutil.copytree(finished(algorithm, T), tmp_path / "run")
    server_file = checkpoint_dir(tmp_path / "run", T) / SERVER_FILE
    server_file.write_bytes(server_file.read_bytes()[:1000])  # truncated, manifest intact
    processes, overrides = settings(algorithm, 2 * T)
    job = train_job(tmp_path, processes, overrides)
    assert job.wait(180) == [0] * processes, job.outputs()
    server = job.ranks[0].output
    assert (
        f"not resuming from it: checkpoint {checkpoint_dir(tmp_path / 'run', T)}: server.pt is torn or truncated"
        in server
    )
    assert f"resuming from {checkpoint_dir(tmp_path / 'run', T // 2)} at iteration {T // 2}" in server
    assert_same_final_models(tmp_path / "run", finished(algorithm, 2 * T))


@pytest.mark.parametrize("algorithm", ["mdgan", "flgan"])
def test_resume_from_a_torn_path_stops_every_rank(
    tmp_path: Path, finished: Callable[[str, int], Path], algorithm: str
) -> None:
    shutil.copytree(finished(algorithm, T), tmp_path / "old")
    directory = checkpoint_dir(tmp_path / "old", T)
    worker_file = next(directory.glob("rank2[.-]*pt"))
    worker_file.write_bytes(worker_file.read_bytes()[:-10])
    processes, overrides = settings(algorithm, 2 * T, [f"resume={directory}"])
    job = train_job(tmp_path, processes, overrides)
    codes = job.wait(120)
    assert codes == [2] * processes, job.outputs()
    assert f"{worker_file.name} is torn or truncated" in job.ranks[0].output
    for rank in job.ranks[1:]:
        assert "the server refused to start (its log, rank 0, says why)" in rank.output


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checkpoint_of_another_config_is_refused(
    tmp_path: Path, finished: Callable[[str, int], Path], algorithm: str
) -> None:
    directory = checkpoint_dir(finished(algorithm, T), T)
    processes, overrides = settings(algorithm, 8, ["train.seed=1", f"resume={directory}"])
    job = train_job(tmp_path, processes, overrides)
    assert job.wait(120) == [2] * processes, job.outputs()
    assert "was written by a run with another configuration (train.seed: 0 in the checkpoint, 1 here)" in (
        job.ranks[0].output
    )


@pytest.mark.parametrize(
    "rule, layout",
    [
        ("class_aware", ["data.split=classes", "data.classes_per_worker=4", "mdgan.k=1"]),
        ("forgiving", ["mdgan.k=1"]),
    ],
)
def test_each_aggregation_rule_resumes_bit_identical(tmp_path: Path, rule: str, layout: list[str]) -> None:
    """The rules other than the mean: the class sets are told again on resume, the verdicts come
    with every feedback; the resumed run ends where the uninterrupted one does."""
    overrides = [*COMMON, *ALGORITHMS["mdgan"][1], f"mdgan.aggregate={rule}", *layout]
    straight, resumed = straight_and_resumed(tmp_path, WORKERS + 1, overrides)
    assert_same_final_models(resumed, straight)
    assert without_timings(metrics(resumed)) == without_timings(metrics(straight))


def test_the_outlier_watch_resumed_mid_streak_names_the_liar_when_an_uninterrupted_run_does(tmp_path: Path) -> None:
    """Worker rank 3 amplifies its feedback from the start; the watch (mdgan.outlier_iterations=5)
    names it at iteration 4 and drops it. The first half ends after iteration 2, its streak at 3:
    the resumed run must go on counting from there (named at 4, not 2 + 5), and drop it where the
    uninterrupted run did."""
    liar = ["mdgan.aggregate=median", "mdgan.k=1", "fault.byzantine_worker=3@amplify"]
    watch = ["mdgan.outlier_iterations=5", "fault.tolerate_worker_loss=true"]
    overrides = [*COMMON, *ALGORITHMS["mdgan"][1], *liar, *watch]
    straight, resumed = straight_and_resumed(tmp_path, WORKERS + 1, overrides, half=3, whole=8)
    assert "worker 2 (rank 3, slot 0) named at iteration 4" in (tmp_path / "resumed" / "rank0.log").read_text()
    assert [r["workers_named"] for r in metrics(resumed)] == [0] * 4 + [1] * 4
    assert without_timings(metrics(resumed)) == without_timings(metrics(straight))
    assert_same_final_models(resumed, straight)


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["privacy.epsilon=20", "privacy.noise_multiplier=0.8", "privacy.secret_noise=false", "gan.augment=none"],
        ["data.clusters=5"],
    ],
    ids=["plain", "private", "clusters"],
)
def test_several_workers_per_process_resume_bit_identical(tmp_path: Path, extra: list[str]) -> None:
    """mdgan.workers_per_rank=2, 4 workers on 2 processes: each process's checkpoint holds its
    stacked discriminators, their Adam state, samplers and augmentation streams, and with
    privacy.* (which refuses augmentation) its Poisson samplers' and noise streams (the noise
    multiplier given: computed, it would depend on train.iterations, which the first half changes);
    with data.clusters, the clusters agreed on again at the resumed start label every image as before."""
    layout = [*COMMON, *ALGORITHMS["mdgan"][1], "mdgan.workers_per_rank=2", *extra]
    straight, resumed = straight_and_resumed(tmp_path, 3, layout)
    holders = sorted(p.name for p in checkpoint_dir(tmp_path / "half" / "run", T).glob("rank*-holds-*.pt"))
    assert len(holders) == 2 and all(name.count("-D") == 2 for name in holders)
    assert_same_final_models(resumed, straight)
    assert without_timings(metrics(resumed)) == without_timings(metrics(straight))
