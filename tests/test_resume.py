"""Checkpoints and exact resume: T iterations, then resumed to 2T, equal 2T at once, bit for bit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mdgan_dist.checkpoint import MANIFEST, SERVER_FILE, checkpoint_dir
from multiproc import TINY, assert_same_final_models, metrics, run_job, train_job

pytestmark = pytest.mark.slow

WORKERS = 3
T = 6
# Swaps every 2 iterations (shards of 1,500, b = 16), a checkpoint every 3: both fall inside each half.
# The augmentation's stream is part of what a worker's checkpoint must restore.
COMMON = [
    *TINY,
    "log.every=1",
    "mdgan.swap_every_epochs=0.02",
    "checkpoint.every=3",
    "gan.augment='translation,cutout'",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The reference: 2T iterations in one go."""
    return run_job(tmp_path_factory.mktemp("straight"), WORKERS + 1, [*COMMON, f"train.iterations={2 * T}"])


@pytest.fixture(scope="module")
def first_half(tmp_path_factory) -> Path:
    """T iterations, the checkpoints a resumed run starts from."""
    return run_job(tmp_path_factory.mktemp("half"), WORKERS + 1, [*COMMON, f"train.iterations={T}"])


def without_timings(records: list[dict]) -> list[dict]:
    """The records less what depends on the machine's speed: seconds."""
    return [{k: v for k, v in r.items() if not (k.endswith("_seconds") or k.startswith("time_"))} for r in records]


def resume(tmp: Path, first_half: Path, extra: list[str] = ()) -> Path:
    """A copy of the first half's run directory, continued to 2T."""
    shutil.copytree(first_half, tmp / "run")
    return run_job(tmp, WORKERS + 1, [*COMMON, f"train.iterations={2 * T}", *extra])


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(
    tmp_path: Path, uninterrupted: Path, first_half: Path
) -> None:
    resumed = resume(tmp_path, first_half)
    assert_same_final_models(resumed, uninterrupted)
    # The second half logged the same losses, swaps and bytes; the first half's records were kept.
    assert without_timings(metrics(resumed)) == without_timings(metrics(uninterrupted))
    # Checkpoints at 3, 6, 9, 12; keep=2 leaves the newest two.
    kept = sorted(p.name for p in (resumed / "checkpoints").iterdir())
    assert kept == ["iteration_00000009", "iteration_00000012"]
    assert all((resumed / "checkpoints" / name / MANIFEST).exists() for name in kept)


def test_checkpoint_names_show_which_discriminator_each_worker_holds(first_half: Path) -> None:
    directory = checkpoint_dir(first_half, T)
    holders = sorted(p.name for p in directory.glob("rank*-holds-D*.pt"))
    assert len(holders) == WORKERS
    held = sorted(int(name.split("-D")[1].removesuffix(".pt")) for name in holders)
    assert held == list(range(WORKERS))  # every D is held by exactly one worker
    assert any(not name.startswith(f"rank{int(name.split('-D')[1][0]) + 1}-") for name in holders), "swaps happened"


def test_torn_newest_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, uninterrupted: Path, first_half: Path
) -> None:
    shutil.copytree(first_half, tmp_path / "run")
    server_file = checkpoint_dir(tmp_path / "run", T) / SERVER_FILE
    server_file.write_bytes(server_file.read_bytes()[:1000])  # truncated, manifest intact
    job = train_job(tmp_path, WORKERS + 1, [*COMMON, f"train.iterations={2 * T}"])
    assert job.wait(180) == [0] * (WORKERS + 1), job.outputs()
    server = job.ranks[0].output
    assert (
        f"not resuming from it: checkpoint {checkpoint_dir(tmp_path / 'run', T)}: server.pt is torn or truncated"
        in server
    )
    assert f"resuming from {checkpoint_dir(tmp_path / 'run', T // 2)} at iteration {T // 2}" in server
    assert_same_final_models(tmp_path / "run", uninterrupted)


def test_resume_from_a_torn_path_stops_every_rank(tmp_path: Path, first_half: Path) -> None:
    shutil.copytree(first_half, tmp_path / "old")
    directory = checkpoint_dir(tmp_path / "old", T)
    worker_file = next(directory.glob("rank2-*.pt"))
    worker_file.write_bytes(worker_file.read_bytes()[:-10])
    job = train_job(tmp_path, WORKERS + 1, [*COMMON, f"train.iterations={2 * T}", f"resume={directory}"])
    codes = job.wait(120)
    assert codes == [2] * (WORKERS + 1), job.outputs()
    assert f"{worker_file.name} is torn or truncated" in job.ranks[0].output
    for rank in job.ranks[1:]:
        assert "the server refused to start (its log, rank 0, says why)" in rank.output


def test_checkpoint_of_another_config_is_refused(tmp_path: Path, first_half: Path) -> None:
    directory = checkpoint_dir(first_half, T)
    job = train_job(tmp_path, WORKERS + 1, [*COMMON, "train.iterations=8", "train.seed=1", f"resume={directory}"])
    assert job.wait(120) == [2] * (WORKERS + 1), job.outputs()
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
    overrides = [*COMMON, f"mdgan.aggregate={rule}", *layout]
    for folder in ("straight", "half", "resumed"):
        (tmp_path / folder).mkdir()
    straight = run_job(tmp_path / "straight", WORKERS + 1, [*overrides, f"train.iterations={2 * T}"])
    half = run_job(tmp_path / "half", WORKERS + 1, [*overrides, f"train.iterations={T}"])
    shutil.copytree(half, tmp_path / "resumed" / "run")
    resumed = run_job(tmp_path / "resumed", WORKERS + 1, [*overrides, f"train.iterations={2 * T}"])
    assert_same_final_models(resumed, straight)
    assert without_timings(metrics(resumed)) == without_timings(metrics(straight))


def test_several_workers_per_process_resume_bit_identical(tmp_path: Path) -> None:
    """mdgan.workers_per_rank=2, 4 workers on 2 processes: each process's checkpoint holds its
    stacked discriminators, their Adam state, samplers and augmentation streams."""
    layout = [*COMMON, "mdgan.workers_per_rank=2"]
    for folder in ("straight", "half", "resumed"):
        (tmp_path / folder).mkdir()
    straight = run_job(tmp_path / "straight", 3, [*layout, f"train.iterations={2 * T}"])
    half = run_job(tmp_path / "half", 3, [*layout, f"train.iterations={T}"])
    holders = sorted(p.name for p in checkpoint_dir(half, T).glob("rank*-holds-*.pt"))
    assert len(holders) == 2 and all(name.count("-D") == 2 for name in holders)
    shutil.copytree(half, tmp_path / "resumed" / "run")
    resumed = run_job(tmp_path / "resumed", 3, [*layout, f"train.iterations={2 * T}"])
    assert_same_final_models(resumed, straight)
    assert without_timings(metrics(resumed)) == without_timings(metrics(straight))
