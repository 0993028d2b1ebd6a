"""One run per run directory: a run of another configuration, or any run under resume=never, is
refused on every rank before anything is written; run.existing=move_aside keeps it whole beside
the new one. Real jobs of every algorithm, then the decision itself on hand-made directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mdgan_dist.compose import compose
from mdgan_dist.config import load as load_config
from mdgan_dist.config import save as save_config
from mdgan_dist.errors import ConfigError
from mdgan_dist.run_directory import check_run_dir, move_aside, other_run
from multiproc import TINY, run_job, train_job

WORLD_SIZES = {"standalone": 1, "flgan": 3, "mdgan": 3}


def contents(directory: Path) -> dict[str, bytes]:
    """Every file under directory, by relative path, with its bytes."""
    return {str(path.relative_to(directory)): path.read_bytes() for path in directory.rglob("*") if path.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", list(WORLD_SIZES))
def test_an_earlier_run_is_refused_untouched_then_moved_aside_whole(tmp_path: Path, algorithm: str) -> None:
    world_size = WORLD_SIZES[algorithm]
    common = [*TINY, f"algorithm={algorithm}", "train.iterations=2"]
    earlier = contents(run_job(tmp_path, world_size, common))
    refusals = {
        "train.seed=1": "it holds a run with another configuration (train.seed: 0 in ",
        "resume=never": "it holds a run, and resume=never starts a new one",
    }
    for override, reason in refusals.items():
        job = train_job(tmp_path, world_size, [*common, override])
        assert job.wait(120) == [2] * world_size, job.outputs()
        for rank in job.ranks:
            assert f"run.dir={tmp_path / 'run'}: {reason}" in rank.output
            assert "run.existing=move_aside" in rank.output
        assert contents(tmp_path / "run") == earlier, f"{override} wrote into the earlier run"

    run_job(tmp_path, world_size, [*common, "train.seed=1", "run.existing=move_aside"])
    (aside,) = tmp_path.glob("run.set-aside-*")
    assert contents(aside) == earlier
    assert load_config(tmp_path / "run" / "config.yaml").train.seed == 1


@pytest.fixture
def saved_run(tmp_path: Path) -> Path:
    """A run directory as a run stopped before its first checkpoint leaves it."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_config(compose([f"run.dir={run_dir}"]), run_dir / "config.yaml")
    (run_dir / "metrics.jsonl").write_text('{"iteration": 10}\n')
    return run_dir


def test_the_same_configuration_continues_and_settings_that_may_change_do_not_matter(saved_run: Path) -> None:
    cfg = compose([f"run.dir={saved_run}", "train.iterations=9000", "log.every=5", "train.threads=1"])
    assert other_run(cfg, saved_run, num_workers=4) is None
    assert check_run_dir(cfg, num_workers=4) is None


def test_a_run_of_unknown_configuration_is_refused(saved_run: Path) -> None:
    cfg = compose([f"run.dir={saved_run}"])
    (saved_run / "config.yaml").write_text("model:\n  no_such_field: 1\n")
    assert "config.yaml this version cannot read" in str(other_run(cfg, saved_run, 4))
    (saved_run / "config.yaml").unlink()
    assert "without its config.yaml" in str(other_run(cfg, saved_run, 4))


def test_an_empty_or_new_directory_takes_any_run(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for run_dir in (tmp_path / "empty", tmp_path / "absent"):
        assert check_run_dir(compose([f"run.dir={run_dir}", "resume=never"]), num_workers=4) is None


def test_the_refusal_names_every_differing_setting_and_both_ways_out(saved_run: Path) -> None:
    cfg = compose([f"run.dir={saved_run}", "train.seed=3", "optim.g_lr=0.001"])
    with pytest.raises(ConfigError) as refused:
        check_run_dir(cfg, num_workers=4)
    message = str(refused.value)
    assert "optim.g_lr: 0.0005 in its config.yaml, 0.001 here; train.seed: 0 in its config.yaml, 3 here" in message
    assert "Nothing was written. Choose another run.dir, or set run.existing=move_aside" in message


def test_move_aside_keeps_every_earlier_copy(saved_run: Path) -> None:
    first = move_aside(saved_run)
    saved_run.mkdir()
    (saved_run / "metrics.jsonl").write_text("second\n")
    second = move_aside(saved_run)
    assert first != second and second.name.startswith(first.name)  # same second: numbered, not replaced
    assert (first / "metrics.jsonl").read_text() == '{"iteration": 10}\n'
    assert (second / "metrics.jsonl").read_text() == "second\n"
    assert not saved_run.exists()


def test_move_aside_refuses_to_move_the_working_directory(saved_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(saved_run)
    cfg = compose(["run.dir=.", "train.seed=1", "run.existing=move_aside"])
    with pytest.raises(ConfigError, match="cannot move the working directory"):
        check_run_dir(cfg, num_workers=4)
    assert Path(os.getcwd()) == saved_run.resolve()
