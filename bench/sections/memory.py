"""Section memory: peak RSS (and CUDA peak) of the server, the largest worker, FL-GAN, standalone."""

from __future__ import annotations

import argparse

from jobs import Runner, Spec
from mdgan_dist.experiments.formatting import mib
from mdgan_dist.experiments.tables import keyed

from .shared_runs import flgan_run, memory_workers
from .table import Table


def section_memory(args: argparse.Namespace, runner: Runner) -> Table:
    n = memory_workers(args)
    runs = [
        (f"MD-GAN N={n}", runner(Spec("mdgan", n))),
        (f"FL-GAN N={n}", flgan_run(args, runner)),
        ("standalone", runner(Spec("standalone", 0))),
    ]
    rows = []
    for name, run in runs:
        workers = run.worker_stats
        largest = max(workers, key=lambda s: s["peak_rss_bytes"]) if workers else None
        rows.append(
            {
                "run": name,
                "server_rss": run.stats[0]["peak_rss_bytes"],
                "worker_rss": largest and largest["peak_rss_bytes"],
                "server_cuda": run.stats[0]["cuda_peak_bytes"],
                "worker_cuda": max((s["cuda_peak_bytes"] or 0 for s in workers), default=None),
            }
        )
    columns = [
        keyed("run", "run"),
        keyed("server_rss", "server (or the one process) peak RSS MiB", mib),
        keyed("worker_rss", "largest worker peak RSS MiB", mib),
    ]
    if args.device == "cuda":
        columns += [
            keyed("server_cuda", "server CUDA peak MiB", mib),
            keyed("worker_cuda", "worker CUDA peak MiB", mib),
        ]
    return Table(
        "Peak memory",
        columns,
        rows,
        notes=[
            "Peak resident set size of each process (getrusage ru_maxrss, written by every rank at the end "
            "in stats_rank*.json); it includes the Python interpreter and torch (a few hundred MiB each)."
            + (" CUDA: torch.cuda.max_memory_allocated." if args.device == "cuda" else "")
        ],
    )
