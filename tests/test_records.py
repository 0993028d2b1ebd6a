"""Run records: the summary of a run kept as a file, so that a grid's tables can be rebuilt and its
runner skip what finished on a machine that no longer holds the run directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mdgan_dist.config import Config, MDGANConfig, TrainConfig
from mdgan_dist.experiments.cli import main
from mdgan_dist.experiments.records import read_record, record_path
from mdgan_dist.experiments.results import summarize
from run_dirs import make_run, scores, training

FLOOR = {"classifier_score": {"mean": 9.5, "sd": 0.1}, "frechet_distance": {"mean": 4.0, "sd": 1.0}}
TARGETS = ["--target", "classifier_score>=9", "--target", "frechet_distance<=2xfloor"]
TABLES = ("results.md", "results.csv", "seeds.csv", "curves.csv", "finished.csv", "class_shares.csv")


def make_seeds(root: Path, seeds: range, group: str = "mdgan-N2-k1-b16") -> None:
    """Finished runs of one configuration with everything a summary reads: scores, class shares,
    the floor, server bytes and the workers' compute."""
    for seed in seeds:
        records = []
        for evaluation in range(1, 4):
            iteration = 100 * evaluation
            shares = {f"class_share/{c}": 0.25 + 0.05 * (c - 1) * seed for c in range(3)}
            records += [
                {**training(iteration, 2.0 * evaluation, 2), "server_bytes_total": 1000 * iteration},
                scores(iteration, 2.0 * evaluation + 0.5, 3.0 * evaluation + 0.25 * seed, 30.0 / evaluation, **shares),
            ]
        cfg = Config(
            algorithm="mdgan", train=TrainConfig(batch_size=16, iterations=300, seed=seed), mdgan=MDGANConfig(k=1)
        )
        name = f"{group}-s{seed}"
        make_run(root, name, cfg, records, workers=2, finished=True, group=group, floor=FLOOR)
        (root / name / "stats_rank1.json").write_text(json.dumps({"rank": 1, "compute_cpu_seconds": 40.0 + seed}))


def test_a_record_holds_the_summary_of_its_run(tmp_path: Path) -> None:
    make_seeds(tmp_path / "runs", range(1))
    assert main(["results", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    run_dir = tmp_path / "runs" / "mdgan-N2-k1-b16-s0"
    recorded = read_record(record_path(tmp_path / "out" / "records", "mdgan-N2-k1-b16-s0"))
    assert recorded == summarize(run_dir)
    assert (
        recorded.floor is not None
        and recorded.bytes_total[200] == 200_000
        and recorded.curves["classifier_score"][-1] == (300, 9.0)
    )


def test_tables_rebuilt_from_records_alone_are_the_same_bytes(tmp_path: Path) -> None:
    """The run directories gone (a fresh machine), the records kept beside the tables give the
    same tables: every per-run row, the means over seeds, the curves and the targets."""
    make_seeds(tmp_path / "runs", range(3))
    compare = ["--compare", "mdgan-N2-k1-b16", "mdgan-N2-k1-b16"]
    assert main(["results", str(tmp_path / "runs"), "--out", str(tmp_path / "first"), *TARGETS, *compare]) == 0
    shutil.copytree(tmp_path / "first" / "records", tmp_path / "kept")
    shutil.rmtree(tmp_path / "runs")
    assert main(["results", str(tmp_path / "kept"), "--out", str(tmp_path / "again"), *TARGETS, *compare]) == 0
    for table in (*TABLES, "verdicts.csv"):
        assert (tmp_path / "again" / table).read_bytes() == (tmp_path / "first" / table).read_bytes(), table


def test_new_runs_join_the_runs_recorded_beside_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Seeds 0 and 1 ran on one machine and were recorded in OUT; seed 2 runs on another: one
    results over its run directory and OUT gives the three seeds. A run directory outranks its own
    record, which may be older (here: the record of an unfinished seed 2)."""
    out = tmp_path / "docs"
    make_seeds(tmp_path / "before", range(2))
    assert main(["results", str(tmp_path / "before"), "--out", str(out)]) == 0
    (record_path(out / "records", "mdgan-N2-k1-b16-s2")).write_text(
        record_path(out / "records", "mdgan-N2-k1-b16-s1")
        .read_text()
        .replace("-s1", "-s2")
        .replace('"finished": true', '"finished": false')
    )
    make_seeds(tmp_path / "after", range(2, 3))
    capsys.readouterr()
    assert main(["results", str(tmp_path / "after"), "--out", str(out)]) == 0
    seeds = (out / "seeds.csv").read_text().splitlines()
    assert seeds[1].startswith("mdgan-N2-k1-b16,3,")
    rows = [row for row in (out / "results.csv").read_text().splitlines() if row.startswith("mdgan")]
    assert [row.split(",")[0] for row in rows] == [f"mdgan-N2-k1-b16-s{seed}" for seed in range(3)]
    assert all(",finished," in row for row in rows)
    assert read_record(record_path(out / "records", "mdgan-N2-k1-b16-s2")).finished


def test_the_runner_skips_what_the_records_say_finished(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    preset = tmp_path / "tiny.yaml"
    grid = {"algorithms": ["mdgan"], "workers": [2], "k": [1], "batch_sizes": [16], "seeds": [0, 1, 2]}
    preset.write_text(json.dumps({"name": "tiny", "overrides": ["model.width=0.0625", "eval.every=0"], "grid": grid}))
    make_seeds(tmp_path / "elsewhere", range(2))
    assert main(["results", str(tmp_path / "elsewhere"), "--out", str(tmp_path / "kept")]) == 0
    # Seed 1's record says unfinished: it runs again.
    path = record_path(tmp_path / "kept" / "records", "mdgan-N2-k1-b16-s1")
    path.write_text(path.read_text().replace('"finished": true', '"finished": false'))
    capsys.readouterr()
    args = ["run", str(preset), "--root", str(tmp_path / "runs"), "--records", str(tmp_path / "kept" / "records")]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"mdgan-N2-k1-b16-s0: finished (its record is in {tmp_path / 'kept' / 'records'}), skipped" in out
    launched = [line.split("] ", 1)[1].split(":")[0] for line in out.splitlines() if line.startswith("[")]
    assert launched == ["mdgan-N2-k1-b16-s1", "mdgan-N2-k1-b16-s2"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda text: text.replace('"version": 1', '"version": 99'),
            "a run record of version 99; this release reads version 1",
        ),
        (lambda text: text.replace('"curves"', '"scores"'), "does not hold a run record's fields"),
        (lambda text: text[:-20], "is not a run record (JSON)"),
    ],
)
def test_a_record_this_release_cannot_read_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, edit, message: str
) -> None:
    make_seeds(tmp_path / "runs", range(1))
    assert main(["results", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    path = record_path(tmp_path / "out" / "records", "mdgan-N2-k1-b16-s0")
    path.write_text(edit(path.read_text()))
    shutil.rmtree(tmp_path / "runs")
    capsys.readouterr()
    assert main(["results", str(tmp_path / "out" / "records"), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_run_directories_all_count_and_a_record_found_twice_counts_once(tmp_path: Path) -> None:
    """Two presets' folders may hold runs of the same name: both are tabulated, as before records.
    The default output lies under the first folder, so its records are found twice: once each."""
    make_seeds(tmp_path / "a", range(1))
    make_seeds(tmp_path / "b", range(1))
    assert main(["results", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    rows = [
        row for row in (tmp_path / "a" / "results" / "results.csv").read_text().splitlines() if row.startswith("mdgan")
    ]
    assert len(rows) == 2
    shutil.rmtree(tmp_path / "b")
    for run in (tmp_path / "a").glob("mdgan-*"):
        shutil.rmtree(run)
    assert main(["results", str(tmp_path / "a")]) == 0  # its records under a/results/records, found twice
    rows = [
        row for row in (tmp_path / "a" / "results" / "results.csv").read_text().splitlines() if row.startswith("mdgan")
    ]
    assert len(rows) == 1
