"""Experiment grids: preset expansion, the commands `mdgan-experiment run` prints or skips, the results
table and plot of run directories in the trainer's format, and one real tiny grid end to end."""

from __future__ import annotations

import csv
import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mdgan_dist.algorithms.registry import validate
from mdgan_dist.compose import compose
from mdgan_dist.config import Config, FaultConfig, MDGANConfig, TrainConfig
from mdgan_dist.errors import ConfigError
from mdgan_dist.experiments import rundir
from mdgan_dist.experiments.cli import main
from mdgan_dist.experiments.grid import load_preset
from mdgan_dist.experiments.launcher import Command, RankProcesses, free_port, split_ranks
from mdgan_dist.experiments.paths import PRESET_DIR, SBATCH_SCRIPT
from mdgan_dist.experiments.plots import score_figure
from mdgan_dist.experiments.results import summarize_under
from mdgan_dist.experiments.targets import Target, parse_target
from run_dirs import make_run, scores, training

PAPER_PRESETS = ("paper_mnist_mlp", "paper_mnist_cnn", "paper_cifar10_cnn")
# By hand: standalone once per b (2); flgan 4 N x 2 b (8); mdgan k in {1, ceil(log2 N)}, which is
# one value for N = 1 and two for N = 10, 25, 50 (k = 4, 5, 6): 7 x 2 b (14). 24 in all.
PAPER_NAMES = [
    "standalone-b10",
    "standalone-b100",
    *(f"flgan-N{n}-b{b}" for n in (1, 10, 25, 50) for b in (10, 100)),
    *(
        f"mdgan-N{n}-k{k}-b{b}"
        for n, ks in ((1, (1,)), (10, (1, 4)), (25, (1, 5)), (50, (1, 6)))
        for k in ks
        for b in (10, 100)
    ),
]
SMALL_NAMES = [
    "standalone-b64",
    "flgan-N1-b64",
    "flgan-N4-b64",
    "mdgan-N1-k1-b64",
    "mdgan-N4-k1-b64",
    "mdgan-N4-k2-b64",
]
TINY = ["model.width=0.0625", "train.iterations=4", "eval.every=0", "log.progress=false", "checkpoint.every=0"]


def write_preset(tmp_path: Path, grid: dict, overrides: list[str] = TINY, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({"name": name, "overrides": overrides, "grid": grid}))  # JSON is YAML
    return path


def output_lines(capsys: pytest.CaptureFixture) -> dict[str, str]:
    """The status lines of `run`, by configuration name: "[i/n] NAME: STATUS" -> {NAME: STATUS}."""
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    return dict(line.split("] ", 1)[1].split(": ", 1) for line in lines)


# --- presets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_paper_presets_expand_to_the_papers_24_configurations(name: str) -> None:
    preset = load_preset(name)
    assert preset.name == name
    assert [c.name for c in preset.configurations] == PAPER_NAMES
    assert "model.conditional=true" in preset.overrides and "train.iterations=50000" in preset.overrides
    assert "recipe=paper" in preset.overrides


def test_small_preset_expands_to_six_configurations() -> None:
    preset = load_preset("mnist5k_small")
    assert [c.name for c in preset.configurations] == SMALL_NAMES
    assert {"data=mnist5k", "train.iterations=5000", "eval.every=500", "log.progress=false"} <= set(preset.overrides)


@pytest.mark.parametrize("path", sorted(PRESET_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_configuration_of_every_shipped_preset_is_a_valid_trainer_config(path: Path) -> None:
    preset = load_preset(str(path))
    assert preset.name == path.stem
    for configuration in preset.configurations:
        cfg = compose([*preset.overrides, *configuration.overrides()])
        validate(cfg, configuration.world_size)
        assert (cfg.algorithm, cfg.train.batch_size) == (configuration.algorithm, configuration.batch_size)
        if configuration.algorithm == "mdgan":
            set_swaps = [o for o in configuration.variant_overrides if o.startswith("mdgan.swap_every_epochs=")]
            swaps = float(set_swaps[0].split("=")[1]) if set_swaps else 1
            assert cfg.mdgan.k == configuration.k and cfg.mdgan.swap_every_epochs == swaps
        if "recipe=paper" in preset.overrides:  # the paper's settings, unless the preset changes them
            changed = {o.split("=")[0] for o in [*preset.overrides, *configuration.variant_overrides]}
            assert cfg.gan.augment == "none" and cfg.gan.conditioning == "acgan" and cfg.optim.d_lr == 2e-4
            assert cfg.gan.ema_halflife > 0 if "gan.ema_halflife" in changed else cfg.gan.ema_halflife == 0


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"algorithms": ["mdgan"], "workers": [2], "k": [4], "batch_sizes": [8]}, "k=4 is larger than N=2"),
        ({"algorithms": ["mdgam"], "workers": [2], "k": [1], "batch_sizes": [8]}, "grid.algorithms holds 'mdgam'"),
        ({"algorithms": ["mdgan"], "workers": [0], "k": [1], "batch_sizes": [8]}, "grid.workers holds 0"),
        ({"algorithms": ["mdgan"], "workers": [2], "k": ["log"], "batch_sizes": [8]}, "grid.k holds 'log'"),
        ({"algorithms": ["mdgan"], "workers": [2], "k": [1]}, "grid has the keys"),
        (
            {"algorithms": ["mdgan"], "workers": [2], "k": [1], "batch_sizes": [8], "seeds": [-1]},
            "grid.seeds holds -1",
        ),
        (
            {"algorithms": ["mdgan"], "workers": [2], "k": [1], "batch_sizes": [8], "variants": {"x": ["mdgan.k=2"]}},
            "grid.variants.x sets mdgan.k=2",
        ),
        (
            {"algorithms": ["mdgan"], "workers": [2], "k": [1], "batch_sizes": [8], "variants": {"a b": ["gan.L=2"]}},
            "has the name 'a b'",
        ),
        (
            {"algorithms": ["mdgan"], "workers": [2], "k": [1], "batch_sizes": [8], "variants": {"x": "gan.L=2"}},
            "grid.variants.x must be a list of overrides",
        ),
    ],
)
def test_a_bad_grid_is_refused_with_what_to_change(tmp_path: Path, grid: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_preset(str(write_preset(tmp_path, grid)))


def test_variants_and_seeds_name_runs_and_add_their_overrides(tmp_path: Path, capsys) -> None:
    grid = {
        "algorithms": ["standalone", "mdgan"],
        "workers": [2],
        "k": [1],
        "batch_sizes": [8],
        "variants": {"slow": ["optim.g_lr=1e-4", "optim.d_lr=1e-4"], "paper": ["gan.ema_halflife=0"]},
        "seeds": [0, 3],
    }
    configurations = load_preset(str(write_preset(tmp_path, grid))).configurations
    assert [c.name for c in configurations] == [
        f"{base}-{variant}-s{seed}"
        for base in ("standalone-b8", "mdgan-N2-k1-b8")
        for variant in ("slow", "paper")
        for seed in (0, 3)
    ]
    slow = configurations[5]
    assert (slow.name, slow.group) == ("mdgan-N2-k1-b8-slow-s3", "mdgan-N2-k1-b8-slow")
    assert slow.overrides() == [
        "algorithm=mdgan", "train.batch_size=8", "mdgan.k=1", "optim.g_lr=1e-4", "optim.d_lr=1e-4", "train.seed=3"
    ]  # fmt: skip
    root = tmp_path / "root"
    assert main(["run", str(write_preset(tmp_path, grid)), "--root", str(root), "--dry-run"]) == 0
    command = shlex.split(output_lines(capsys)["mdgan-N2-k1-b8-slow-s3"])
    assert command[-3:] == ["optim.d_lr=1e-4", "train.seed=3", f"run.dir={root}/tiny/mdgan-N2-k1-b8-slow-s3"]
    # --seeds replaces the preset's seeds.
    assert main(["run", str(write_preset(tmp_path, grid)), "--root", str(root), "--dry-run", "--seeds", "5", "7"]) == 0
    assert list(output_lines(capsys)) == [
        f"{base}-{variant}-s{seed}"
        for base in ("standalone-b8", "mdgan-N2-k1-b8")
        for variant in ("slow", "paper")
        for seed in (5, 7)
    ]
    with pytest.raises(SystemExit):
        main(["run", str(write_preset(tmp_path, grid)), "--dry-run", "--seeds", "-1"])
    assert "-1 is not a seed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", str(write_preset(tmp_path, grid)), "--dry-run", "--seeds", "0", "log.every=2"])
    assert "'log.every=2' is not a seed (an integer >= 0); put overrides before --seeds" in capsys.readouterr().err


def test_unknown_preset_names_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="mnist5k_small"):
        load_preset("no_such_preset")


# --- run -------------------------------------------------------------------------------------------

GRID = {"algorithms": ["standalone", "flgan", "mdgan"], "workers": [3], "k": [1, "log2"], "batch_sizes": [16]}


def test_dry_run_prints_torchrun_per_configuration_with_overrides_in_order(tmp_path: Path, capsys) -> None:
    preset, root = write_preset(tmp_path, GRID), tmp_path / "root"
    # Options may also follow the overrides.
    assert main(["run", str(preset), "log.every=2", "--root", str(root), "--dry-run"]) == 0
    commands = {name: shlex.split(line) for name, line in output_lines(capsys).items()}
    assert list(commands) == ["standalone-b16", "flgan-N3-b16", "mdgan-N3-k1-b16", "mdgan-N3-k2-b16"]

    mdgan = commands["mdgan-N3-k2-b16"]
    assert mdgan[:4] == [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=4"]
    assert mdgan[4].startswith("--master-port=")
    grid_overrides = ["algorithm=mdgan", "train.batch_size=16", "mdgan.k=2", f"run.dir={root}/tiny/mdgan-N3-k2-b16"]
    assert mdgan[5:] == ["-m", "mdgan_dist.train", *TINY, "log.every=2", *grid_overrides]
    assert "--nproc_per_node=4" in commands["flgan-N3-b16"] and "mdgan.k=1" not in commands["flgan-N3-b16"]
    assert commands["standalone-b16"][:3] == [sys.executable, "-m", "mdgan_dist.train"]
    assert commands["standalone-b16"][-3:] == [
        "algorithm=standalone",
        "train.batch_size=16",
        f"run.dir={root}/tiny/standalone-b16",
    ]
    assert not root.exists()  # a dry run writes nothing


def test_pack_hosts_mdgan_workers_several_to_a_process_and_leaves_the_names(tmp_path: Path, capsys) -> None:
    grid = {"algorithms": ["flgan", "mdgan"], "workers": [4, 6], "k": [1], "batch_sizes": [16], "pack": 4}
    preset = write_preset(tmp_path, grid)
    assert main(["run", str(preset), "--root", str(tmp_path / "root"), "--dry-run"]) == 0
    commands = {name: shlex.split(line) for name, line in output_lines(capsys).items()}
    assert list(commands) == ["flgan-N4-b16", "flgan-N6-b16", "mdgan-N4-k1-b16", "mdgan-N6-k1-b16"]
    # N = 4: one process of 4 workers; N = 6: W = 3, the largest divisor of 6 up to 4; FL-GAN unpacked.
    assert (
        "--nproc_per_node=2" in commands["mdgan-N4-k1-b16"]
        and "mdgan.workers_per_rank=4" in commands["mdgan-N4-k1-b16"]
    )
    assert (
        "--nproc_per_node=3" in commands["mdgan-N6-k1-b16"]
        and "mdgan.workers_per_rank=3" in commands["mdgan-N6-k1-b16"]
    )
    assert "--nproc_per_node=7" in commands["flgan-N6-b16"]
    assert not any(arg.startswith("mdgan.workers_per_rank") for arg in commands["flgan-N6-b16"])
    with pytest.raises(ConfigError, match=r"grid\.pack holds 0"):
        load_preset(str(write_preset(tmp_path, {**grid, "pack": 0})))


def test_dry_run_with_slurm_prints_one_sbatch_per_configuration(tmp_path: Path, capsys) -> None:
    preset, root = write_preset(tmp_path, GRID), tmp_path / "root"
    assert main(["run", str(preset), "--root", str(root), "--slurm", "--procs-per-node", "2", "--dry-run"]) == 0
    commands = {name: shlex.split(line) for name, line in output_lines(capsys).items()}

    mdgan = commands["mdgan-N3-k2-b16"]
    sbatch = mdgan.index("sbatch")
    assert "NPROC_PER_NODE=2" in mdgan[:sbatch] and f"MDGAN_PYTHON={sys.executable}" in mdgan[:sbatch]
    assert "--nodes=2" in mdgan and f"--output={root}/tiny/mdgan-N3-k2-b16/slurm-%j.out" in mdgan
    script = mdgan.index(str(SBATCH_SCRIPT))
    assert mdgan[script + 1 :] == [
        *TINY,
        "algorithm=mdgan",
        "train.batch_size=16",
        "mdgan.k=2",
        f"run.dir={root}/tiny/mdgan-N3-k2-b16",
    ]

    standalone = commands["standalone-b16"]
    assert "NPROC_PER_NODE=1" in standalone and "--nodes=1" in standalone


CRASHES = {
    "algorithms": ["mdgan"],
    "workers": [3],
    "k": [1],
    "batch_sizes": [16],
    "variants": {
        "steady": ["fault.tolerate_worker_loss=true"],
        "tolerated": ["fault.tolerate_worker_loss=true", "fault.kill_worker=[2@2]"],
        "fatal": ["fault.kill_worker=2@2"],
    },
}


def test_a_crash_schedule_runs_one_plain_process_per_rank_and_not_on_slurm(tmp_path: Path, capsys) -> None:
    """torchrun's agent would stop every rank at the first kill; SLURM's script starts such agents."""
    preset, root = write_preset(tmp_path, CRASHES), tmp_path / "root"
    assert main(["run", str(preset), "--root", str(root), "--dry-run"]) == 0
    commands = output_lines(capsys)
    assert "torch.distributed.run --nproc_per_node=4" in commands["mdgan-N3-k1-b16-steady"]
    for name in ("mdgan-N3-k1-b16-tolerated", "mdgan-N3-k1-b16-fatal"):
        ranks, command = commands[name].split(": ", 1)
        assert ranks.startswith("4 processes with RANK=0..3 WORLD_SIZE=4 MASTER_ADDR=127.0.0.1 MASTER_PORT=")
        assert shlex.split(command)[:3] == [sys.executable, "-m", "mdgan_dist.train"]
        assert shlex.split(command)[-1] == f"run.dir={root}/tiny/{name}"

    assert main(["run", str(preset), "--root", str(root), "--slurm", "--dry-run"]) == 2
    assert "mdgan-N3-k1-b16-tolerated: fault.kill_worker cannot run with --slurm" in capsys.readouterr().err


def test_plain_rank_processes_end_the_others_when_an_unexpected_rank_fails() -> None:
    """Rank 1 exits 3 at once; the others would run a minute. Allowed to die, it is waited out."""
    script = "import os, sys, time; rank = int(os.environ['RANK']); sys.exit(3) if rank == 1 else time.sleep({})"
    started = time.monotonic()
    codes = RankProcesses(Command([sys.executable, "-c", script.format(60)]), 3, free_port()).run(may_die=())
    assert codes == [-signal.SIGTERM, 3, -signal.SIGTERM] and time.monotonic() - started < 30
    assert RankProcesses(Command([sys.executable, "-c", script.format(1)]), 3, free_port()).run(may_die=(1,)) == [
        0,
        3,
        0,
    ]


@pytest.mark.parametrize(
    "world_size, procs_per_node, expected",
    [(1, 8, (1, 1)), (5, 8, (1, 5)), (4, 2, (2, 2)), (26, 8, (13, 2)), (51, 16, (17, 3)), (11, 8, (11, 1))],
)
def test_ranks_spread_evenly_over_the_fewest_nodes(world_size: int, procs_per_node: int, expected: tuple) -> None:
    assert split_ranks(world_size, procs_per_node) == expected


def test_scored_grid_trains_the_evaluation_classifier_first(tmp_path: Path, capsys) -> None:
    assert main(["run", "mnist5k_small", "--root", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    classifier = next(line for line in out.splitlines() if line.startswith("evaluation classifier: "))
    assert classifier.split(": ", 1)[1].startswith(f"{sys.executable} -m mdgan_dist.metrics.cli train-classifier ")
    assert "data=mnist5k" in classifier and out.index(classifier) < out.index("[1/6]")


def test_finished_runs_are_skipped_and_unfinished_ones_resumed(tmp_path: Path, capsys) -> None:
    """Every algorithm resumes: the baselines' unfinished runs continue as MD-GAN's do."""
    grid = {"algorithms": ["mdgan", "flgan", "standalone"], "workers": [1, 2], "k": [1], "batch_sizes": [16]}
    preset = write_preset(tmp_path, grid)
    names = ["mdgan-N1-k1-b16", "mdgan-N2-k1-b16", "flgan-N1-b16", "flgan-N2-b16", "standalone-b16"]
    finished, *unfinished = (tmp_path / "tiny" / name for name in names)
    for run_dir in (finished, *unfinished):
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.jsonl").write_text('{"iteration": 1}\n')
    (finished / "generator.pt").write_bytes(b"")

    assert main(["run", str(preset), "--root", str(tmp_path), "--dry-run"]) == 0
    status = output_lines(capsys)
    assert status["mdgan-N1-k1-b16"] == "finished, skipped"
    for run_dir in unfinished:
        assert shlex.split(status[run_dir.name])[-2:] == ["resume=auto", f"run.dir={run_dir}"]

    # Not a dry run: with the unfinished ones done too, nothing is launched at all.
    for run_dir in unfinished:
        (run_dir / "generator.pt").write_bytes(b"")
    assert main(["run", str(preset), "--root", str(tmp_path)]) == 0
    assert set(output_lines(capsys).values()) == {"finished, skipped"}


def test_a_bad_override_stops_the_grid_before_any_run(tmp_path: Path, capsys) -> None:
    preset = write_preset(tmp_path, GRID)
    assert main(["run", str(preset), "--root", str(tmp_path / "root"), "train.batchsize=3"]) == 2
    assert "train.batchsize" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()


def test_a_split_that_leaves_a_class_out_stops_the_grid_before_any_run(tmp_path: Path, capsys) -> None:
    """The data split is checked too: 2 classes per worker over 4 workers cover 8 of the 10 classes."""
    grid = {**GRID, "workers": [4], "variants": {"classes": ["data.split=classes", "data.classes_per_worker=2"]}}
    assert main(["run", str(write_preset(tmp_path, grid)), "--root", str(tmp_path / "root"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "flgan-N4-b16-classes: data.split=classes with 4 workers x data.classes_per_worker=2 covers only 8" in err
    assert not (tmp_path / "root").exists()


# --- results ---------------------------------------------------------------------------------------


def make_grid(root: Path, with_inception: bool) -> None:
    mdgan_records = [
        training(10, 1.0, 2, seconds=0.25),
        scores(10, 1.5, 2.5, 40.0),
        training(20, 2.0, 2, seconds=0.5),
        scores(20, 2.5, 7.125, 12.5),
        training(30, 65.0, 2, seconds=0.125),
        scores(30, 65.4, 6.0, 20.25),
    ]
    mdgan = Config(algorithm="mdgan", train=TrainConfig(batch_size=16, iterations=30), mdgan=MDGANConfig(k=1))
    make_run(root, "mdgan-N2-k1-b16", mdgan, mdgan_records, workers=2, finished=True)
    # Started by hand (no grid.json): N comes from its logged per-worker losses.
    extra = {"is": 3.5, "fid": 80.0} if with_inception else {}
    flgan_records = [training(10, 3.0, 3), scores(10, 3.2, 4.0, 30.0, **extra)]
    make_run(root, "flgan-N3-b8", Config(algorithm="flgan", train=TrainConfig(batch_size=8)), flgan_records, None, True)
    # Stopped early and never scored.
    standalone = Config(algorithm="standalone", train=TrainConfig(batch_size=16))
    make_run(root, "standalone-b16", standalone, [training(5, 0.4, 1), training(10, 0.9, 1)], None, False)


def test_results_table_csv_and_plot_hold_what_the_runs_logged(tmp_path: Path, capsys) -> None:
    make_grid(tmp_path, with_inception=False)
    assert main(["results", str(tmp_path)]) == 0
    out = tmp_path / "results"

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [row["configuration"] for row in rows] == ["standalone-b16", "flgan-N3-b8", "mdgan-N2-k1-b16"]
    standalone, flgan, mdgan = rows
    described = {key: mdgan[key] for key in ("method", "N", "k", "b", "status", "iterations")}
    assert described == {"method": "mdgan", "N": "2", "k": "1", "b": "16", "status": "finished", "iterations": "30"}
    assert float(mdgan["wall_time_s"]) == 65.4
    assert float(mdgan["iteration_seconds"]) == 0.25  # the median of the logged iterations
    assert float(mdgan["classifier_score_best"]) == 7.125 and mdgan["classifier_score_best_iteration"] == "20"
    assert float(mdgan["classifier_score_final"]) == 6.0
    assert float(mdgan["frechet_distance_best"]) == 12.5 and mdgan["frechet_distance_best_iteration"] == "20"
    assert float(mdgan["frechet_distance_final"]) == 20.25
    assert (flgan["N"], flgan["k"], flgan["b"]) == ("3", "", "8")
    assert (standalone["N"], standalone["status"], standalone["iterations"]) == ("", "unfinished", "10")
    assert standalone["classifier_score_best"] == standalone["frechet_distance_final"] == ""
    assert not any(key.startswith(("is_", "fid_")) for key in rows[0])

    table = (out / "results.md").read_text()
    assert table == capsys.readouterr().out.split("wrote ")[0]
    lines = table.splitlines()
    assert len(lines) == 2 + len(rows) + 2  # and the unfinished run named after the table
    assert lines[-1] == "Unfinished, so in no table over the seeds: standalone-b16 (iteration 10)."
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    cells = dict(zip(header, (cell.strip() for cell in lines[4].strip("|").split("|"))))
    assert cells["configuration"] == "mdgan-N2-k1-b16" and cells["wall time"] == "1m05s"
    assert (cells["best classifier score"], cells["final classifier score"]) == ("7.125", "6.000")
    assert (cells["best (lowest) Frechet distance"], cells["final Frechet distance"]) == ("12.500", "20.250")
    assert "| standalone-b16 | standalone |  |  | 16 | unfinished | 10 | 1s | 0.100 |  |" in table

    png = (out / "scores.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert events.Tags()["images"] == ["scores"]


def test_inception_columns_appear_when_a_run_logged_them(tmp_path: Path) -> None:
    make_grid(tmp_path, with_inception=True)
    assert main(["results", str(tmp_path), "--out", str(tmp_path / "elsewhere")]) == 0
    rows = list(csv.DictReader((tmp_path / "elsewhere" / "results.csv").open()))
    assert float(rows[1]["is_final"]) == 3.5 and float(rows[1]["fid_best"]) == 80.0
    assert rows[2]["is_best"] == rows[2]["fid_final"] == ""


def test_results_show_the_figures_the_raw_g_the_floor_and_the_mean_over_seeds(tmp_path: Path, capsys) -> None:
    floor = {
        "classifier_score": {"mean": 9.25, "sd": 0.125},
        "frechet_distance": {"mean": 4.5, "sd": 1.5},
        "salt": {"mean": 1e-05, "sd": 5e-06},
    }
    cfg = Config(algorithm="mdgan", train=TrainConfig(batch_size=16, iterations=20), mdgan=MDGANConfig(k=1))
    finals = [(8.0, 10.0, 0.001, 0.002), (9.0, 14.0, 0.003, 0.004), (7.0, 12.0, 0.002, 0.006)]
    for seed, (cs, fd, salt, raw_salt) in enumerate(finals):
        figures = {"salt": salt, "class_share_min": 0.05 + seed / 100, "class_entropy": 3.0, "raw_salt": raw_salt}
        records = [training(20, 1.0, 2, seconds=0.1 * (seed + 1)), scores(20, 1.5, cs, fd, **figures)]
        name = f"mdgan-N2-k1-b16-s{seed}"
        make_run(tmp_path, name, cfg, records, 2, True, group="mdgan-N2-k1-b16", floor=floor)
    # Another configuration, one seed: a row of its own in the first table only.
    make_run(tmp_path, "mdgan-N2-k1-b16-paper", cfg, [scores(20, 1.5, 5.0, 50.0, salt=0.01)], 2, True)
    assert main(["results", str(tmp_path)]) == 0
    out = tmp_path / "results"

    rows = {row["configuration"]: row for row in csv.DictReader((out / "results.csv").open())}
    assert float(rows["mdgan-N2-k1-b16-s1"]["salt_final"]) == 0.003
    assert float(rows["mdgan-N2-k1-b16-s2"]["raw_salt_final"]) == 0.006
    assert float(rows["mdgan-N2-k1-b16-s2"]["class_share_min_final"]) == 0.07
    assert rows["mdgan-N2-k1-b16-paper"]["raw_salt_final"] == ""
    real = rows["real data (mnist5k, 500 samples)"]
    assert float(real["classifier_score_final"]) == 9.25 and float(real["salt_final"]) == 1e-05
    assert real["classifier_score_best"] == real["class_share_min_final"] == ""

    (seeds,) = csv.DictReader((out / "seeds.csv").open())
    assert (seeds["configuration"], seeds["runs"]) == ("mdgan-N2-k1-b16", "3")
    assert float(seeds["classifier_score_final_mean"]) == pytest.approx(8.0)
    assert float(seeds["classifier_score_final_sd"]) == pytest.approx(1.0)
    # The 95 % t-interval of a mean of 3: 8 +- t(0.975, 2) x 1 / sqrt(3), t(0.975, 2) = 4.3027.
    half = 4.302653 / 3**0.5
    assert float(seeds["classifier_score_final_low"]) == pytest.approx(8.0 - half)
    assert float(seeds["classifier_score_final_high"]) == pytest.approx(8.0 + half)
    assert float(seeds["classifier_score_last3_mean"]) == pytest.approx(8.0)  # one evaluation each
    assert float(seeds["frechet_distance_final_sd"]) == pytest.approx(2.0)
    assert float(seeds["raw_salt_final_mean"]) == pytest.approx(0.004)
    assert float(seeds["iteration_seconds_mean"]) == pytest.approx(0.2)  # what a cost estimate reads
    assert float(seeds["iteration_seconds_sd"]) == pytest.approx(0.1)

    table = (out / "results.md").read_text()
    assert table == capsys.readouterr().out.split("wrote ")[0]
    assert "| real data (mnist5k, 500 samples) |" in table and "9.250 ± 0.125" in table
    assert (
        "| mdgan-N2-k1-b16 | 3 | 0.200 ± 0.100 [-0.048, 0.448] | 8.000 ± 1.000 [5.516, 10.484] | 8.000 ± 1.000 [5.516, 10.484] "
        "| 8.000 ± 1.000 [5.516, 10.484] |" in table
    )
    seeds_table = table.split("Over the seeds:")[1]
    assert (
        "| real data (mnist5k, 500 samples) |  |  |  | 9.250 ± 0.125 |  |  | 4.500 ± 1.500 |  | 1e-05 ± 5e-06 |"
        in seeds_table
    )
    assert "final salt, raw G" in table


def make_seeded(root: Path, group: str, algorithm: str, last_scores: list[list[float]]) -> None:
    """One run per seed, scored at iterations 10, 20, 30 and 40: the classifier score climbs to the
    given last three values, the Frechet distance is 100 / classifier score."""
    cfg = Config(algorithm=algorithm, train=TrainConfig(batch_size=16, iterations=40), mdgan=MDGANConfig(k=1))
    for seed, last in enumerate(last_scores):
        cfg.train.seed = seed
        values = [1.0, *last]
        records = [scores(10 * (i + 1), float(i), cs, 100 / cs) for i, cs in enumerate(values)]
        make_run(root, f"{group}-s{seed}", cfg, records, 2, True, group=group)


def test_the_plot_averages_finished_seeds_and_shows_a_configuration_still_running(tmp_path: Path) -> None:
    """A configuration's curve is the mean over its finished seeds, as in the tables: a seed still
    at iteration 20 neither cuts it short nor moves it. One with no finished seed shows its runs'
    progress, labelled unfinished."""
    make_seeded(tmp_path, "mdgan-N2-k1-b16", "mdgan", [[5.0, 6.0, 7.0], [6.0, 7.0, 8.0]])
    cfg = Config(algorithm="mdgan", train=TrainConfig(batch_size=16, iterations=40, seed=2), mdgan=MDGANConfig(k=1))
    early = [scores(10, 0.0, 1.0, 100.0), scores(20, 1.0, 9.5, 10.0)]
    make_run(tmp_path, "mdgan-N2-k1-b16-s2", cfg, early, 2, False, group="mdgan-N2-k1-b16")
    make_run(tmp_path, "flgan-N2-b16-s0", cfg, early, 2, False, group="flgan-N2-b16")
    axes = score_figure(summarize_under(tmp_path)).axes[0]  # the classifier score
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert set(lines) == {"mdgan-N2-k1-b16 (2 seeds)", "flgan-N2-b16-s0 (unfinished)"}
    mean = lines["mdgan-N2-k1-b16 (2 seeds)"]
    assert list(mean.get_xdata()) == [10, 20, 30, 40]
    assert list(mean.get_ydata()) == pytest.approx([1.0, 5.5, 6.5, 7.5])
    assert list(lines["flgan-N2-b16-s0 (unfinished)"].get_ydata()) == [1.0, 9.5]


def test_results_judge_claims_over_seeds_and_write_curves_and_hparams(tmp_path: Path, capsys) -> None:
    make_seeded(tmp_path, "mdgan-N2-k1-b16", "mdgan", [[5.0, 6.0, 7.0], [6.0, 7.0, 8.0], [5.5, 6.5, 7.5]])
    make_seeded(tmp_path, "flgan-N2-b16", "flgan", [[2.0, 3.0, 4.0], [2.5, 3.5, 4.5], [1.5, 2.5, 3.5]])
    make_seeded(tmp_path, "flgan-N2-b16-twin", "flgan", [[2.0, 3.0, 4.0], [2.5, 3.5, 4.5], [1.5, 2.5, 4.0]])
    # A run that lost a worker (fault.tolerate_worker_loss) says so in workers.json.
    dropped = {"live": [2], "dropped": [{"rank": 1, "stage": "training iteration 15", "cause": "dead"}]}
    (tmp_path / "mdgan-N2-k1-b16-s0" / "workers.json").write_text(json.dumps(dropped))
    claims = [("mdgan-N2-k1-b16", "flgan-N2-b16"), ("flgan-N2-b16", "mdgan-N2-k1-b16")]
    claims.append(("flgan-N2-b16", "flgan-N2-b16-twin"))
    assert main(["results", str(tmp_path), *(arg for claim in claims for arg in ("--compare", *claim))]) == 0
    out = tmp_path / "results"

    rows = {row["configuration"]: row for row in csv.DictReader((out / "results.csv").open())}
    assert float(rows["mdgan-N2-k1-b16-s1"]["classifier_score_last3"]) == pytest.approx(7.0)
    assert [rows[f"mdgan-N2-k1-b16-s{seed}"]["workers_lost"] for seed in range(3)] == ["1", "", ""]
    verdicts = [
        (row["better"], row["than"], row["score"], row["verdict"])
        for row in csv.DictReader((out / "verdicts.csv").open())
    ]
    assert verdicts == [
        ("mdgan-N2-k1-b16", "flgan-N2-b16", "classifier_score", "holds"),
        ("mdgan-N2-k1-b16", "flgan-N2-b16", "frechet_distance", "holds"),  # lower is better
        ("flgan-N2-b16", "mdgan-N2-k1-b16", "classifier_score", "opposite"),
        ("flgan-N2-b16", "mdgan-N2-k1-b16", "frechet_distance", "opposite"),
        ("flgan-N2-b16", "flgan-N2-b16-twin", "classifier_score", "tie"),
        ("flgan-N2-b16", "flgan-N2-b16-twin", "frechet_distance", "tie"),
    ]
    (first, *_) = csv.DictReader((out / "verdicts.csv").open())
    assert float(first["difference"]) == pytest.approx(6.5 - 3.0)  # the last-3 means: 6, 7, 6.5 against 3, 3.5, 2.5
    assert float(first["low"]) < 3.5 < float(first["high"]) and float(first["p_value"]) < 0.05
    table = (out / "results.md").read_text()
    assert "Verdicts (Welch's t-test on the per-seed means of the last three evaluations" in table
    assert "| mdgan-N2-k1-b16 better than flgan-N2-b16 | 3.500 [2.367, 4.633], p 0.001 | **holds** |" in table

    curves = [row for row in csv.DictReader((out / "curves.csv").open()) if row["configuration"] == "mdgan-N2-k1-b16"]
    classifier = [row for row in curves if row["score"] == "classifier_score"]
    assert [int(row["iteration"]) for row in classifier] == [10, 20, 30, 40]
    assert [float(row["mean"]) for row in classifier] == pytest.approx([1.0, 5.5, 6.5, 7.5])
    assert float(classifier[0]["sd"]) == 0.0 and float(classifier[3]["sd"]) == pytest.approx(0.5)

    # HParams: one entry per run, its configuration and summary scores.
    board = out / "tensorboard" / "mdgan-N2-k1-b16-s1"
    events = EventAccumulator(str(board))
    events.Reload()
    assert events.Scalars("hparams/classifier_score_last3")[0].value == pytest.approx(7.0)
    session = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    assert b"mdgan-N2-k1-b16" in session and b"seed" in session

    # A claim must name configurations of the folder, with 2 seeds on each side.
    assert main(["results", str(tmp_path), "--compare", "mdgan-N2-k1-b16", "nope"]) == 2
    assert "--compare names 'nope', which is none of the configurations" in capsys.readouterr().err


def test_results_show_the_outlier_watchs_detection_delay_and_false_alarms(tmp_path: Path) -> None:
    """Runs with the watch on (mdgan.outlier_iterations): with liars, the first logged iteration at
    which it had named a worker, or none; without, whether it named one all the same."""
    watched = MDGANConfig(k=1, outlier_iterations=20)
    liar = FaultConfig(byzantine_worker="1:0@amplify")
    runs = {  # name: (its mdgan and fault sections, workers_named at iterations 10, 20, 30)
        "liar-caught": (watched, liar, [0, 0, 1]),
        "liar-missed": (watched, liar, [0, 0, 0]),
        "honest-false-alarm": (watched, FaultConfig(), [0, 1, 1]),
        "honest-quiet": (watched, FaultConfig(), [0, 0, 0]),
        "liar-unwatched": (MDGANConfig(k=1), liar, [0, 0, 0]),
    }
    for name, (mdgan, fault, named) in runs.items():
        records = [{**training(10 * (i + 1), 1.0, 2), "workers_named": n} for i, n in enumerate(named)]
        cfg = Config(algorithm="mdgan", train=TrainConfig(batch_size=16, iterations=30), mdgan=mdgan, fault=fault)
        make_run(tmp_path / ("unwatched" if mdgan is not watched else "watched"), name, cfg, records, 2, True)
    assert main(["results", str(tmp_path)]) == 0
    rows = {row["configuration"]: row for row in csv.DictReader((tmp_path / "results" / "results.csv").open())}
    shown = {name: (row["detection_delay"], row["false_alarm"]) for name, row in rows.items()}
    assert shown == {
        "liar-caught": ("30", ""),
        "liar-missed": ("none", ""),
        "honest-false-alarm": ("", "yes"),
        "honest-quiet": ("", "no"),
        "liar-unwatched": ("", ""),
    }
    table = (tmp_path / "results" / "results.md").read_text()
    assert "| detection delay (iterations) | false alarm |" in table
    # Runs without the watch have no such columns.
    assert main(["results", str(tmp_path / "unwatched")]) == 0
    (row,) = csv.DictReader((tmp_path / "unwatched" / "results" / "results.csv").open())
    assert "detection_delay" not in row and "false_alarm" not in row


def test_results_of_a_folder_without_runs_is_an_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["results", str(tmp_path / "empty")]) == 2
    assert "no runs under" in capsys.readouterr().err
    assert main(["results", str(tmp_path / "missing")]) == 2


# --- end to end ------------------------------------------------------------------------------------


def experiment(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mdgan_dist.experiments.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_a_tiny_grid_trains_then_is_skipped_then_tabulated(tmp_path: Path) -> None:
    preset = write_preset(tmp_path, {"algorithms": ["mdgan"], "workers": [1], "k": [1], "batch_sizes": [16]})
    root = tmp_path / "runs"
    run_dir = root / "tiny" / "mdgan-N1-k1-b16"

    first = experiment("run", str(preset), "--root", str(root), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr + (run_dir / "train.log").read_text()
    assert "[1/1] mdgan-N1-k1-b16: done in " in first.stdout
    assert (run_dir / "generator.pt").exists()
    assert json.loads((run_dir / "grid.json").read_text())["workers"] == 1

    again = experiment("run", str(preset), "--root", str(root), cwd=tmp_path)
    assert again.returncode == 0 and "[1/1] mdgan-N1-k1-b16: finished, skipped" in again.stdout

    results = experiment("results", str(root / "tiny"), cwd=tmp_path)
    assert results.returncode == 0, results.stderr
    (row,) = csv.DictReader((root / "tiny" / "results" / "results.csv").open())
    assert (row["configuration"], row["N"], row["k"], row["b"]) == ("mdgan-N1-k1-b16", "1", "1", "16")
    assert (row["status"], row["iterations"], row["classifier_score_best"]) == ("finished", "4", "")
    assert float(row["wall_time_s"]) > 0


@pytest.mark.slow
def test_a_grid_trains_on_past_its_killed_workers_and_fails_when_the_server_does(tmp_path: Path) -> None:
    """The killed rank's exit is expected; every other rank's is checked: without tolerate_worker_loss
    the server stops at the kill, and the grid reports the ranks that failed."""
    grid = {**CRASHES, "variants": {name: CRASHES["variants"][name] for name in ("tolerated", "fatal")}}
    root = tmp_path / "runs"
    preset = write_preset(tmp_path, grid, [*TINY, "log.every=1"])
    result = experiment("run", str(preset), "--root", str(root), cwd=tmp_path)
    tolerated, fatal = root / "tiny" / "mdgan-N3-k1-b16-tolerated", root / "tiny" / "mdgan-N3-k1-b16-fatal"
    assert result.returncode == 1, result.stdout + result.stderr + (tolerated / "train.log").read_text()
    assert "mdgan-N3-k1-b16-tolerated: done in " in result.stdout, (tolerated / "train.log").read_text()
    summary = json.loads((tolerated / "workers.json").read_text())
    assert summary["live"] == [1, 3] and [d["rank"] for d in summary["dropped"]] == [2]
    assert (tolerated / "generator.pt").exists()
    assert [r["iteration"] for r in rundir.read_metrics(tolerated)] == [1, 2, 3, 4]

    failure = next(line for line in result.stdout.splitlines() if "mdgan-N3-k1-b16-fatal: FAILED: " in line)
    assert "rank 0 exit code 1" in failure and "rank 2" not in failure, failure
    assert "exit code -" not in failure, failure  # a rank stopped by a signal is named by it
    assert "rank 2" in (fatal / "train.log").read_text() and not (fatal / "generator.pt").exists()
    assert "1 of 2 configurations failed: mdgan-N3-k1-b16-fatal" in result.stderr


# --- a finished generator: targets ------------------------------------------------------------------


def test_a_target_reads_a_bound_or_a_multiple_of_the_floor_and_is_refused_the_wrong_way() -> None:
    assert parse_target("classifier_score>=9") == Target("classifier_score", 9.0, of_floor=False)
    assert parse_target("frechet_distance <= 2xfloor") == Target("frechet_distance", 2.0, of_floor=True)
    with pytest.raises(ConfigError, match=r"lower frechet_distance is better, so its target reads frechet_distance<="):
        parse_target("frechet_distance>=3")
    with pytest.raises(ConfigError, match=r"SCORE one of classifier_score, frechet_distance"):
        parse_target("sharpness>=1")


def test_results_say_what_each_configuration_took_to_reach_the_targets(tmp_path: Path, capsys) -> None:
    """Two seeds that reach classifier score >= 9 and Frechet distance <= 2 x the floor (4.0) at
    their second and third evaluation, one that never does; compute and bytes up to that point."""
    floor = {"classifier_score": {"mean": 9.5, "sd": 0.1}, "frechet_distance": {"mean": 4.0, "sd": 1.0}}
    curves = {0: [(5.0, 40.0), (9.2, 7.5), (9.5, 5.0)], 1: [(4.0, 50.0), (9.1, 9.0), (9.3, 8.0)], 2: [(3.0, 90.0)] * 3}
    for seed, points in curves.items():
        records = []
        for evaluation, (cs, fd) in enumerate(points, 1):
            iteration = 100 * evaluation
            shares = {f"class_share/{c}": (0.1 if c else 0.05 * seed) for c in range(3)}
            records += [
                {**training(iteration, 1.0, 2), "server_bytes_total": 1000 * iteration},
                scores(iteration, 1.5, cs, fd, **shares),
            ]
        cfg = Config(algorithm="mdgan", train=TrainConfig(batch_size=16, iterations=300, seed=seed))
        name = f"mdgan-N2-k1-b16-s{seed}"
        make_run(tmp_path, name, cfg, records, workers=2, finished=True, group="mdgan-N2-k1-b16", floor=floor)
        # The server records no training compute. Seed 1 was resumed at iteration 100: its worker
        # processes clocked only the 200 iterations they trained, 2/3 of the seconds of the others.
        trained = {"iterations_trained": 200} if seed == 1 else {}
        for rank, seconds in ((0, None), (1, 30.0), (2, 60.0)):
            if seconds is not None and seed == 1:
                seconds *= 2 / 3
            stats = {"rank": rank, **({} if seconds is None else {"compute_cpu_seconds": seconds, **trained})}
            (tmp_path / name / f"stats_rank{rank}.json").write_text(json.dumps(stats))
    # A fourth seed, stopped early: no final scores, so it is in no table over the seeds (it
    # would count as a run that never reached the targets), only in the per-run table.
    cfg = Config(algorithm="mdgan", train=TrainConfig(batch_size=16, iterations=300, seed=3))
    early = [training(10, 1.0, 2)]
    make_run(
        tmp_path, "mdgan-N2-k1-b16-s3", cfg, early, workers=2, finished=False, group="mdgan-N2-k1-b16", floor=floor
    )
    targets = ["--target", "classifier_score>=9", "--target", "frechet_distance<=2xfloor"]
    assert main(["results", str(tmp_path), *targets]) == 0
    out = tmp_path / "results"
    rows = {row["seed"]: row for row in csv.DictReader((out / "finished.csv").open())}
    # Seed 0 reaches both at its second evaluation (7.5 <= 8); seed 1 only at its third (9.0 > 8).
    assert (rows["0"]["reached_iteration"], rows["1"]["reached_iteration"], rows["2"]["reached_iteration"]) == (
        "200",
        "300",
        "",
    )
    # 90 CPU seconds over 300 iterations: 60 by iteration 200; the bytes logged at iteration 200.
    assert float(rows["0"]["reached_worker_cpu_seconds"]) == 60.0 and rows["0"]["reached_server_bytes"] == "200000"
    # The resumed seed's 60 seconds over 200 iterations are 90 over its 300.
    assert float(rows["1"]["reached_worker_cpu_seconds"]) == pytest.approx(90.0)
    assert float(rows["1"]["run_worker_cpu_seconds"]) == pytest.approx(90.0)
    table = (out / "results.md").read_text()
    assert "To a finished generator (classifier_score>=9 and frechet_distance<=2xfloor" in table
    assert "| mdgan-N2-k1-b16 | 2 of 3 | 250.000 ± 70.711 [-385.310, 885.310] |" in table
    assert "Unfinished, so in no table over the seeds: mdgan-N2-k1-b16-s3 (iteration 10)." in table
    # Each class's final share: class 0 is 0, 0.05, 0.1 over the seeds that have one.
    assert "| mdgan-N2-k1-b16 | 3 | 0.050 | 0.100 | 0.100 | 0 |" in table
    shares = {row["seed"]: row for row in csv.DictReader((out / "class_shares.csv").open())}
    assert float(shares["2"]["class_share_0"]) == 0.1 and float(shares["2"]["class_share_2"]) == 0.1
    assert shares["3"]["class_share_0"] == ""  # no evaluation yet
