"""mdgan-experiment: train an experiment grid, or turn its run directories into a table and a plot.

    mdgan-experiment run mnist5k_small                         # 6 runs, one after the other, here
    mdgan-experiment run paper_mnist_mlp data.root=/data --slurm --procs-per-node 16
    mdgan-experiment run mnist5k_small --only mdgan --dry-run  # print the commands
    mdgan-experiment run seeds_methods --seeds 0 1 2 3         # the preset's grid with these seeds
    mdgan-experiment results runs/experiments/mnist5k_small    # results.md, results.csv, scores.png, records/
    mdgan-experiment run which_method_n4 --records docs/results/which_method_n4/records  # skip what they hold
    mdgan-experiment results runs/experiments/which_method_n4 --out docs/results/which_method_n4
                                                               # with the runs recorded there before
    mdgan-experiment results runs/experiments/seeds_methods --compare mdgan-N4-k2-b64 flgan-N4-b64

Exit codes: 0 success, 1 a configuration (or the evaluation classifier) failed, 2 a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

from mdgan_dist.algorithms.registry import plan as data_plan
from mdgan_dist.algorithms.registry import validate
from mdgan_dist.compose import compose
from mdgan_dist.config import Config
from mdgan_dist.errors import ConfigError
from mdgan_dist.experiments.grid import load_preset
from mdgan_dist.experiments.hparams import write_hparams
from mdgan_dist.experiments.launcher import (
    Job,
    LaunchError,
    LocalLauncher,
    SlurmLauncher,
    classifier_command,
    ensure_classifier,
    launch_grid,
    plan,
)
from mdgan_dist.experiments.paths import PRESET_DIR
from mdgan_dist.experiments.plots import write_plots
from mdgan_dist.experiments.records import NoRunsError, collect, finished_names, write_records
from mdgan_dist.experiments.result_tables import markdown, write_tables
from mdgan_dist.experiments.rundir import is_finished
from mdgan_dist.experiments.targets import parse_target, sections, write_class_shares, write_finished

RECORDS_DIR = "records"  # beside the tables that results writes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mdgan-experiment", description="Experiment grids: standalone GAN vs FL-GAN vs MD-GAN."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="train every configuration of a preset's grid")
    run.add_argument("preset", help=f"a preset's name in {PRESET_DIR} or a path to a preset file")
    run.add_argument("overrides", nargs="*", help="Hydra overrides for every configuration, applied after the preset's")
    run.add_argument("--root", type=Path, default=Path("runs/experiments"), help="runs go to ROOT/PRESET/CONFIGURATION")
    run.add_argument("--slurm", action="store_true", help="submit one sbatch job per configuration; does not wait")
    run.add_argument(
        "--procs-per-node",
        type=_positive,
        default=8,
        help="with --slurm: at most this many ranks per node; N + 1 ranks are spread evenly over the fewest nodes "
        "that allow it (N + 1 <= P keeps a run on one node)",
    )
    run.add_argument(
        "--records",
        type=Path,
        metavar="DIR",
        help="skip the configurations whose run record under DIR (written by `results`) says they finished",
    )
    run.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    run.add_argument("--only", metavar="SUBSTRING", help="only the configurations whose name contains SUBSTRING")
    run.add_argument(
        "--seeds",
        type=_seed,
        nargs="+",
        metavar="SEED",
        help="run every configuration with each of these train.seed values, in place of the preset's grid.seeds",
    )

    results = commands.add_parser(
        "results", help="results.md, results.csv, scores.png and a record per run of the runs under DIR"
    )
    results.add_argument(
        "dirs",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="a grid's folder, or any folder holding run directories or run records; where a run has both, "
        "its directory is read",
    )
    results.add_argument(
        "--out",
        type=Path,
        help="where to write them, a record per run under OUT/records; the runs recorded there before are "
        "tabulated too; default DIR/results of the first DIR",
    )
    results.add_argument(
        "--compare",
        nargs=2,
        action="append",
        default=[],
        metavar=("A", "B"),
        help="judge the claim 'configuration A is better than B' over their seeds (repeatable): "
        "Welch's test on the mean of each run's last 3 evaluations, verdict holds, tie or opposite",
    )
    results.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="SCORE>=BOUND",
        help="a finished generator's quality (repeatable; all must hold): e.g. 'classifier_score>=9' "
        "'frechet_distance<=2xfloor' (a multiple of what real images score); adds what each configuration "
        "took to reach it: iterations, worker compute and server bytes (finished.csv)",
    )
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def _seed(text: str) -> int:
    if not text.lstrip("-").isdigit():
        # --seeds takes every word after it: an override there would be read as a seed.
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed (an integer >= 0); put overrides before --seeds")
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not a seed (an integer >= 0)")
    return value


def run_grid(args: argparse.Namespace) -> int:
    preset = load_preset(args.preset, args.seeds)
    configurations = [c for c in preset.configurations if args.only is None or args.only in c.name]
    if not configurations:
        names = ", ".join(c.name for c in preset.configurations)
        raise ConfigError(f"--only {args.only!r} matches none of the configurations: {names}")
    jobs = plan(preset, configurations, args.root, args.overrides)
    print(f"{preset.name}: {len(jobs)} configurations under {args.root / preset.name}", flush=True)
    if args.records is not None:
        recorded = finished_names(args.records)
        for job in [job for job in jobs if job.name in recorded and not is_finished(job.run_dir)]:
            print(f"{job.name}: finished (its record is in {args.records}), skipped", flush=True)
            jobs.remove(job)
    scored, split_checked = False, set[tuple]()
    for index, job in enumerate(jobs):
        if not is_finished(job.run_dir):
            jobs[index], cfg = checked_job(job, args.slurm, split_checked)
            scored |= cfg.eval.every > 0
    if scored:
        common = [*preset.overrides, *args.overrides]
        if args.dry_run:
            print(f"evaluation classifier: {classifier_command(common)}")
        else:
            ensure_classifier(common)
    launcher = SlurmLauncher(args.procs_per_node) if args.slurm else LocalLauncher()
    failed = launch_grid(jobs, launcher, args.dry_run)
    if failed:
        print(f"{len(failed)} of {len(jobs)} configurations failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def checked_job(job: Job, slurm: bool, split_checked: set[tuple]) -> tuple[Job, Config]:
    """The job's config composed, validated and its data split as its trainer will, so a typo, an
    impossible value or a split that leaves a class out stops the grid before its first run, not in
    its tenth; the job comes back with the workers its crash schedule kills."""
    world_size = job.configuration.world_size
    try:
        cfg = compose(job.overrides)
        _, faults = validate(cfg, world_size)
        # What the data checks read: configurations that share it (variants, often) are checked once.
        split = (cfg.algorithm, world_size, *map(repr, (cfg.data, cfg.model, cfg.train, cfg.mdgan, cfg.comm)))
        if split not in split_checked:
            data_plan(cfg, world_size)
            split_checked.add(split)
        killed = tuple(sorted(faults.kills))
        if killed and slurm:
            raise ConfigError(
                "fault.kill_worker cannot run with --slurm: launch/slurm.sbatch starts torchrun agents, "
                "which stop every rank when one dies; run it here without --slurm"
            )
    except ConfigError as error:
        raise ConfigError(f"{job.name}: {error}") from error
    return dataclasses.replace(job, killed_ranks=killed), cfg


def report(args: argparse.Namespace) -> int:
    targets = [parse_target(text) for text in args.target]
    out = args.out or args.dirs[0] / "results"
    runs = collect([*args.dirs, out / RECORDS_DIR])  # the tables cover every run recorded beside them
    claims = [(better, than) for better, than in args.compare]
    more = sections(runs, targets)
    table = markdown(runs, claims) + more  # first: a claim naming no configuration stops before any file is written
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "tensorboard", ignore_errors=True)  # the last report's events would show twice
    written = [
        *write_tables(runs, out, claims, more),
        *write_finished(runs, targets, out),
        *write_class_shares(runs, out),
        write_plots(runs, out),
        out / "tensorboard",
        out / RECORDS_DIR,
    ]
    write_records(runs, out / RECORDS_DIR)
    write_hparams(runs, out / "tensorboard")
    print(table, end="")
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Options may follow the Hydra overrides; argparse leaves overrides after an option over.
    args, rest = parser.parse_known_args(argv)
    if rest and (args.command != "run" or any(arg.startswith("-") for arg in rest)):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "run":
        args.overrides += rest
    try:
        return run_grid(args) if args.command == "run" else report(args)
    except (ConfigError, NoRunsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
