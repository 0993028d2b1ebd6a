"""Section overlap: mdgan.real_ahead off and on (a worker computes the real half of its next D step
while the next batches travel; no number changes), each job against the job's compute bound,
with repeated jobs and a repeated bound: the paper's MNIST MLP at N = 4, b = 64 packed on two
processes, the default run (`make train`: N = 4, one worker a process), and the default model
packed as the MLP is."""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobs import Result, Runner, Spec
from mdgan_dist.experiments.formatting import ms, ratio
from mdgan_dist.experiments.tables import Column, keyed

from .role_compute import compute_bound, contended_worker_seconds
from .table import Table, range_column

WORKERS = 4


@dataclass(frozen=True)
class Setting:
    name: str
    per_rank: int  # W
    threads: int | None  # None: the trainer's default, as `make train` runs
    overrides: tuple[str, ...]


SETTINGS = (
    Setting("paper MLP, b = 64, packed (W = 2)", 2, 1, ("model=mnist_mlp", "model.width=1.0", "train.batch_size=64")),
    Setting("default run", 1, None, ()),
    # The default model with its workers packed as the MLP's: one worker process per core.
    Setting("default model, packed (W = 2)", 2, 1, ()),
)


def where_time_goes(runs: list[Result]) -> dict[str, float]:
    """Medians over the jobs of each job's median: the server's own compute (generate and G's
    step), its wait for the answers, the slowest worker process's D steps and feedback once the
    batches came, and the real half a worker computed before they came."""

    def median_of(key: str | Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(run.median(key) for run in runs)

    return {
        "server_seconds": median_of(lambda r: r["time_generate"] + r["time_backward"]),
        "wait_seconds": median_of("time_wait"),
        "worker_seconds": median_of("time_worker_max"),
        "ahead_seconds": median_of("time_worker_ahead"),
    }


def section_overlap(args: argparse.Namespace, runner: Runner) -> Table:
    cores = os.cpu_count() or 1
    repeats = args.overlap_repeats
    rows = []
    for setting in SETTINGS:
        overrides = setting.overrides if not args.quick else ()
        runs: dict[bool, list[Result]] = {False: [], True: []}
        for repeat in range(repeats):  # off and on in turn, so that a drift of the machine hits both
            for ahead in (False, True):
                spec = Spec(
                    "mdgan",
                    WORKERS,
                    (*overrides, f"mdgan.real_ahead={ahead}"),
                    setting.threads,
                    per_rank=setting.per_rank,
                    repeat=repeat,
                )
                runs[ahead].append(runner(spec))
        bound_overrides = [*runner.shared_overrides(), *overrides]
        measured = [
            compute_bound(bound_overrides, WORKERS, setting.per_rank, args.repetitions, cores) for _ in range(repeats)
        ]
        bounds = [bound.seconds for bound in measured]
        alone = statistics.median(bound.worker for bound in measured)
        busy = statistics.median(
            seconds
            for _ in range(repeats)
            for seconds in contended_worker_seconds(bound_overrides, setting.per_rank, args.repetitions, cores)
        )
        processes = measured[0].processes
        busy_bound = (statistics.median(bound.server for bound in measured) + processes * busy) / cores
        for ahead, jobs in runs.items():
            walls = [job.wall for job in jobs]
            rows.append(
                {
                    "setting": setting.name,
                    "real_ahead": ahead,
                    "wall_seconds": statistics.median(walls),
                    "wall_min": min(walls),
                    "wall_max": max(walls),
                    "bound_seconds": statistics.median(bounds),
                    "bound_min": min(bounds),
                    "bound_max": max(bounds),
                    "over_bound": statistics.median(walls) / statistics.median(bounds),
                    "over_bound_min": min(walls) / max(bounds),
                    "over_bound_max": max(walls) / min(bounds),
                    "worker_alone_seconds": alone,
                    "worker_busy_seconds": busy,
                    "busy_bound_seconds": busy_bound,
                    "over_busy_bound": statistics.median(walls) / busy_bound,
                    **where_time_goes(jobs),
                    # D steps a worker process computed a real half ahead for, the fewest of any
                    "halves_ahead": min(stats["real_halves_ahead"] for job in jobs for stats in job.worker_stats),
                }
            )
    return Table(
        f"A worker's real half computed ahead (mdgan.real_ahead), N = {WORKERS}, against the compute bound "
        f"({repeats} jobs and {repeats} bounds each)",
        [
            keyed("setting", "setting"),
            Column("real_ahead", "real_ahead", lambda row: "on" if row["real_ahead"] else "off"),
            keyed("wall_seconds", "ms/iter (median)", ms),
            range_column("wall_range", "range", "wall_min", "wall_max", ms),
            keyed("bound_seconds", "compute bound ms", ms),
            range_column("bound_range", "bound range", "bound_min", "bound_max", ms),
            keyed("over_bound", "x bound", ratio),
            range_column("over_bound_range", "x bound range", "over_bound_min", "over_bound_max", ratio),
            keyed("worker_alone_seconds", "worker step alone ms", ms),
            keyed("worker_busy_seconds", "every core busy ms", ms),
            keyed("over_busy_bound", "x busy bound", ratio),
            keyed("server_seconds", "server compute ms", ms),
            keyed("wait_seconds", "server waits ms", ms),
            keyed("worker_seconds", "slowest worker ms", ms),
            keyed("ahead_seconds", "ahead ms", ms),
        ],
        rows,
        notes=[
            "ms/iter: the median over the jobs of each job's median iteration time (first 10% dropped); "
            "range: the lowest and highest job median. Compute bound: the server's generate and G step plus "
            "every worker process's iteration, timed in one process on one thread (each the median of "
            f"--repetitions), divided over the {cores} cores, measured {repeats} times. x bound range: the "
            "lowest job over the highest bound to the highest job over the lowest bound. Worker step alone: "
            "one worker process's iteration in the bound; every core busy: the same timed in one process per "
            "core at once (the median over them and the repeats); busy bound: the bound with that worker step, "
            "what the cores deliver when all of them compute. Server compute: "
            "generate and G's step; slowest worker: the slowest worker process's D steps and feedback once the "
            "batches came, as it reports them; ahead: the real half a worker computed before they came (the mean "
            "over the workers). Jobs off and on alternate.",
        ],
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overlap-repeats", type=int, default=None, help="jobs and bounds per figure (3; quick 1)")


def resolve_arguments(args: argparse.Namespace) -> None:
    args.overlap_repeats = args.overlap_repeats or (1 if args.quick else 3)
