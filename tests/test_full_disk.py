"""A checkpoint that cannot be written (a full disk): the complete checkpoints before it stay intact
and verifiable, whatever step of the write fails; the run then stops with a clear error, or goes
on with a warning under checkpoint.on_error=warn."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mdgan_dist import checkpoint
from mdgan_dist.checkpoint import (
    MANIFEST,
    SERVER_FILE,
    atomic_save,
    checkpoint_dir,
    checkpoints_root,
    newest_complete,
    verify,
    write_manifest,
)
from mdgan_dist.config import Config
from mdgan_dist.errors import ConfigError
from mdgan_dist.trajectory import fingerprint, trajectory_settings
from multiproc import TINY, metrics, train_job

TRAJECTORY = trajectory_settings(Config(), 1)


def disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def half_written(state: object, file: object) -> None:
    """torch.save that runs out of space halfway through the file."""
    file.write(b"\x00" * 100)  # type: ignore[attr-defined]
    disk_full()


FAILURES: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "open": lambda patch: patch.setattr(checkpoint, "open", disk_full, raising=False),
    "save": lambda patch: patch.setattr(torch, "save", half_written),
    "fsync": lambda patch: patch.setattr(os, "fsync", disk_full),
    "rename": lambda patch: patch.setattr(os, "replace", disk_full),
}


def complete_checkpoint(run_dir: Path, iteration: int) -> Path:
    directory = checkpoint_dir(run_dir, iteration)
    atomic_save(
        {"iteration": iteration, "generator": {"w": torch.full((4,), float(iteration))}}, directory / SERVER_FILE
    )
    atomic_save({"iteration": iteration}, directory / "rank1-holds-D0.pt")
    write_manifest(directory, iteration, TRAJECTORY)
    return directory


@pytest.mark.parametrize("step", list(FAILURES))
def test_a_failed_file_write_leaves_the_previous_file_and_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    path = tmp_path / SERVER_FILE
    atomic_save({"generator": torch.zeros(3)}, path)
    before = path.read_bytes()
    FAILURES[step](monkeypatch)
    with pytest.raises(OSError, match="No space left on device"):
        atomic_save({"generator": torch.ones(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [SERVER_FILE]


@pytest.mark.parametrize("step", ["server file", "manifest text", "manifest rename"])
def test_a_checkpoint_that_fails_at_any_step_leaves_the_previous_one_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    complete_checkpoint(tmp_path, 2)
    directory = checkpoint_dir(tmp_path, 4)
    atomic_save({"iteration": 4}, directory / "rank1-holds-D0.pt")
    if step != "server file":
        atomic_save({"iteration": 4}, directory / SERVER_FILE)
    if step == "server file":
        FAILURES["save"](monkeypatch)
    elif step == "manifest text":
        monkeypatch.setattr(Path, "write_text", disk_full)
    else:
        FAILURES["rename"](monkeypatch)
    with pytest.raises(OSError, match="No space left on device"):
        if step == "server file":
            atomic_save({"iteration": 4}, directory / SERVER_FILE)
        write_manifest(directory, 4, TRAJECTORY)
    monkeypatch.undo()
    assert not (directory / MANIFEST).exists() and not list(directory.glob("*.tmp"))
    found, refused = newest_complete(tmp_path, TRAJECTORY, 1)
    assert found is not None and found.iteration == 2 and "incomplete" in refused[0]
    assert verify(checkpoint_dir(tmp_path, 2), TRAJECTORY, 1).iteration == 2


COMMON = [*TINY, "train.iterations=8", "log.every=1", "checkpoint.every=2"]
# MD-GAN swaps, so that its checkpoints hold swapped discriminators; the others refuse mdgan.*.
ALGORITHM = {
    "mdgan": ["mdgan.swap_every_epochs=0.02"],
    "flgan": ["algorithm=flgan"],
    "standalone": ["algorithm=standalone"],
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "algorithm, processes, failing",
    [("mdgan", 4, 2), ("flgan", 4, 2), ("standalone", 1, 0)],
    ids=["mdgan-worker", "flgan-worker", "standalone"],
)
def test_a_rank_out_of_space_stops_every_rank_and_resume_continues(
    tmp_path: Path, algorithm: str, processes: int, failing: int
) -> None:
    common = [*COMMON, *ALGORITHM[algorithm]]
    job = train_job(tmp_path, processes, [*common, f"fault.checkpoint_error={failing}@4"])
    codes = job.wait(120)
    assert codes == [1] + [0] * (processes - 1), job.outputs()
    assert "No space left on device" in job.ranks[failing].output
    server = job.ranks[0].output
    cause = "worker rank 2 could not write its file" if failing else "[Errno 28] No space left on device"
    assert f"the checkpoint of iteration 4 could not be written ({cause}" in server
    assert "Traceback" not in server and "checkpoint.on_error=warn" in server
    root = checkpoints_root(tmp_path / "run")
    assert sorted(p.name for p in root.iterdir()) == ["iteration_00000002"]
    resumed = train_job(tmp_path, processes, common)
    assert resumed.wait(120) == [0] * processes, resumed.outputs()
    assert "at iteration 2" in resumed.ranks[0].output
    assert [r["iteration"] for r in metrics(tmp_path / "run")] == list(range(1, 9))


@pytest.mark.slow
def test_with_on_error_warn_the_run_goes_on_without_that_checkpoint(tmp_path: Path) -> None:
    job = train_job(
        tmp_path, 3, [*COMMON, *ALGORITHM["mdgan"], "fault.checkpoint_error=0@4", "checkpoint.on_error=warn"]
    )
    assert job.wait(120) == [0] * 3, job.outputs()
    assert "training goes on without it (checkpoint.on_error=warn)" in job.ranks[0].output
    root = checkpoints_root(tmp_path / "run")
    assert sorted(p.name for p in root.iterdir()) == ["iteration_00000006", "iteration_00000008"]
    assert all((root / name / MANIFEST).exists() for name in ("iteration_00000006", "iteration_00000008"))


# --- which checkpoint a run may resume: the settings its manifest keeps --------------------------


def test_a_setting_added_since_the_checkpoint_resumes_at_its_default_and_a_changed_one_is_named(
    tmp_path: Path,
) -> None:
    """A checkpoint written before gan.r1 existed: its manifest lacks the setting. Resuming with r1
    at its default (off, what the older code did) is the same run; with r1 on, or another seed, it
    is not, and the refusal says which setting differs."""
    directory = complete_checkpoint(tmp_path, 2)
    older = trajectory_settings(Config(), 1)
    del older["gan"]["r1"]
    write_manifest(directory, 2, older)
    assert verify(directory, trajectory_settings(Config(), 1), 1).iteration == 2
    changed = Config()
    changed.gan.r1, changed.train.seed = 1.0, 7
    with pytest.raises(ConfigError, match=r"\(gan\.r1: 0\.0 in the checkpoint, 1\.0 here; train\.seed: 0 in the"):
        verify(directory, trajectory_settings(changed, 1), 1)
    with pytest.raises(ConfigError, match=r"num_workers: 1 in the checkpoint, 2 here"):
        verify(directory, trajectory_settings(Config(), 2), 1)


def test_a_checkpoint_that_kept_only_a_fingerprint_is_checked_by_it(tmp_path: Path) -> None:
    directory = complete_checkpoint(tmp_path, 2)
    settings = trajectory_settings(Config(), 1)
    manifest = json.loads((directory / MANIFEST).read_text())
    del manifest["trajectory"]
    manifest["trajectory_digest"] = fingerprint(settings)
    (directory / MANIFEST).write_text(json.dumps(manifest))
    assert verify(directory, settings, 1).iteration == 2
    other = Config()
    other.train.seed = 1
    with pytest.raises(ConfigError, match="predates recorded settings, and their fingerprint differs"):
        verify(directory, trajectory_settings(other, 1), 1)
