"""Section packing: several MD-GAN workers per process (mdgan.workers_per_rank) against one per
process, for N workers: iteration time with its spread over repeated jobs, the compute bound, and
the whole job's peak memory."""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass
from typing import Any

from jobs import Result, Runner, Spec
from mdgan_dist.experiments.formatting import mib, ms, ratio
from mdgan_dist.experiments.tables import keyed

from .role_compute import compute_bound
from .table import Table, range_column

GIB = 2**30


@dataclass(frozen=True)
class Layout:
    name: str
    per_rank: int  # W
    processes: int  # worker processes: N / W
    threads: int  # intra-op threads of every rank


def layouts(workers: int, cores: int, most_processes: int) -> list[Layout]:
    """One worker per process (while N + 1 processes stay within most_processes), and the workers
    packed onto one process per core (one process with every core's threads when N does not
    divide evenly)."""
    found = []
    if workers + 1 <= most_processes:
        found.append(Layout("one per process", 1, workers, 1))
    processes = min(cores, workers) if workers % min(cores, workers) == 0 else 1
    if workers > 1:
        found.append(Layout("packed", workers // processes, processes, max(1, cores // processes)))
    return found


def job_memory(run: Result) -> int:
    """The job's peak: every rank's peak resident set, added up."""
    return sum(stats["peak_rss_bytes"] for stats in run.stats.values())


def largest_fitting(rows: list[dict[str, Any]], total: int) -> dict[str, int | None]:
    """The largest N whose job fits `total` bytes, each way: one per process from the per-worker
    process peak; packed onto as many processes as measured from a line through the worker
    process's peak against W (its workers)."""
    fits: dict[str, int | None] = {"one per process": None, "packed": None}
    one = [row for row in rows if row["layout"] == "one per process" and row["workers"] > 1]
    if one:
        row = max(one, key=lambda row: row["workers"])
        fits["one per process"] = int((total - row["server_rss"]) // row["worker_rss"])
    packed = [row for row in rows if row["layout"] == "packed"]
    if len({row["per_rank"] for row in packed}) >= 2:
        xs = [row["per_rank"] for row in packed]
        ys = [row["worker_rss"] for row in packed]
        slope, intercept = statistics.linear_regression(xs, ys)
        widest = max(packed, key=lambda row: row["workers"])
        processes, server = widest["processes"], widest["server_rss"]
        if slope > 0:
            fits["packed"] = int(processes * ((total - server) / processes - intercept) // slope)
    return fits


def section_packing(args: argparse.Namespace, runner: Runner) -> Table:
    cores = os.cpu_count() or 1
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    rows = []
    for batch in args.packing_batches:
        overrides = (*args.packing_overrides, f"train.batch_size={batch}")
        for workers in args.packing_workers:
            for layout in layouts(workers, cores, args.packing_most_processes):
                runs = [
                    runner(Spec("mdgan", workers, overrides, layout.threads, per_rank=layout.per_rank, repeat=repeat))
                    for repeat in range(args.packing_repeats)
                ]
                walls = [run.wall for run in runs]
                overrides_bound = [*runner.shared_overrides(), *args.packing_overrides]
                bound = compute_bound(overrides_bound, workers, layout.per_rank, args.repetitions, cores).seconds
                rows.append(
                    {
                        "batch": batch,
                        "workers": workers,
                        "layout": layout.name,
                        "processes": layout.processes,
                        "per_rank": layout.per_rank,
                        "threads": layout.threads,
                        "wall_seconds": statistics.median(walls),
                        "wall_min": min(walls),
                        "wall_max": max(walls),
                        "bound_seconds": bound,
                        "over_bound": statistics.median(walls) / bound,
                        "job_memory": statistics.median(job_memory(run) for run in runs),
                        "server_rss": runs[0].stats[0]["peak_rss_bytes"],
                        "worker_rss": max(stats["peak_rss_bytes"] for stats in runs[0].worker_stats),
                    }
                )
    fits = largest_fitting([row for row in rows if row["batch"] == max(args.packing_batches)], total)
    return Table(
        f"Several workers per process: iteration time vs N ({args.packing_repeats} jobs each)",
        [
            keyed("batch", "b"),
            keyed("workers", "N"),
            keyed("layout", "layout"),
            keyed("processes", "worker processes"),
            keyed("per_rank", "W"),
            keyed("threads", "threads"),
            keyed("wall_seconds", "ms/iter (median)", ms),
            range_column("range", "range", "wall_min", "wall_max", ms),
            keyed("bound_seconds", "compute bound ms", ms),
            keyed("over_bound", "x bound", ratio),
            keyed("job_memory", "job peak RSS MiB", mib),
        ],
        rows,
        notes=[
            "ms/iter: the median over the repeated jobs of each job's median iteration time (first 10% "
            "dropped); range: the lowest and highest job median. Compute bound: the server's generate and "
            "G step plus every worker process's iteration (the roles' own compute objects), timed in one "
            f"process on one thread, divided over the {cores} cores. Job peak RSS: the sum of every rank's.",
            f"Largest N whose job fits this machine's {total / GIB:.0f} GiB at the largest b: one per process "
            f"about {fits['one per process']}, packed about {fits['packed']} (from the measured peaks; "
            "one-per-process jobs beyond N + 1 = "
            f"{args.packing_most_processes} processes are not run).",
        ],
        summary={"largest_n": fits, "cores": cores, "memory_bytes": total},
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--packing-workers", type=int, nargs="+", default=None, help="N values of packing")
    parser.add_argument("--packing-batches", type=int, nargs="+", default=None, help="b values of packing")
    parser.add_argument("--packing-repeats", type=int, default=None, help="jobs per figure of packing (3; quick 1)")
    parser.add_argument(
        "--packing-most-processes", type=int, default=12, help="one-per-process jobs up to this many processes"
    )


def most_processes(args: argparse.Namespace) -> int:
    """The most processes a packing job runs."""
    return min(args.packing_most_processes, max(args.packing_workers) + 1)


def resolve_arguments(args: argparse.Namespace) -> None:
    args.packing_workers = args.packing_workers or ([4] if args.quick else [1, 4, 10, 25, 50])
    args.packing_repeats = args.packing_repeats or (1 if args.quick else 3)
    args.packing_batches = args.packing_batches or ([16] if args.quick else [10, 64])
    # The paper's MNIST MLP at its published width, unconditional (quick: the test's tiny size).
    args.packing_overrides = [] if args.quick else ["model=mnist_mlp", "model.width=1.0"]
