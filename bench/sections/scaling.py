"""Section scaling: iteration time vs N (swaps off), and where it goes."""

from __future__ import annotations

import argparse
import os
from typing import Any

from jobs import Runner, Spec
from mdgan_dist.config import resolved_k
from mdgan_dist.experiments.formatting import ms, one_decimal
from mdgan_dist.experiments.tables import keyed

from .table import Table


def transport_idle(record: dict[str, Any]) -> float:
    """Server waiting time not explained by the slowest worker's compute: messages and scheduling."""
    return max(record["time_wait"] - record["time_worker_max"], 0.0)


def server_other(record: dict[str, Any]) -> float:
    """The rest of the server's iteration: posting the sends, header checks, bookkeeping."""
    return record["iteration_seconds"] - record["time_generate"] - record["time_wait"] - record["time_backward"]


def section_scaling(args: argparse.Namespace, runner: Runner) -> Table:
    rows = []
    for n in args.workers:
        run = runner(Spec("mdgan", n))
        rows.append(
            {
                "workers": n,
                "k": resolved_k(run.cfg.mdgan, n),
                "wall_seconds": run.wall,
                "iterations_per_second": 1 / run.wall,
                "generate": run.median("time_generate"),
                "backward": run.median("time_backward"),
                "worker_d": run.median("time_worker_d"),
                "worker_feedback": run.median("time_worker_feedback"),
                "wait": run.median("time_wait"),
                "transport_idle": run.median(transport_idle),
                "server_other": run.median(server_other),
            }
        )
    cores, most = os.cpu_count() or 1, max(args.workers) + 1
    if most > cores:
        load = (
            f"Up to {most} processes share {cores} cores: the machine is oversubscribed, and the wall time "
            "grows with N for lack of cores, not because of the protocol."
        )
    else:
        load = f"At most {most} processes on {cores} cores: one core each at least."
    return Table(
        "Iteration time vs N (swaps off)",
        [
            keyed("workers", "N"),
            keyed("k", "k"),
            keyed("wall_seconds", "wall ms/iter", ms),
            keyed("iterations_per_second", "it/s", one_decimal),
            keyed("generate", "server generate", ms),
            keyed("backward", "server backward+step", ms),
            keyed("worker_d", "worker D steps", ms),
            keyed("worker_feedback", "worker feedback", ms),
            keyed("wait", "server wait", ms),
            keyed("transport_idle", "transport+idle", ms),
            keyed("server_other", "server other", ms),
        ],
        rows,
        notes=[
            "Milliseconds, medians over iterations (first 10% dropped), each column its own median. "
            "Worker columns are the mean over workers of one iteration; transport+idle = "
            "max(server wait - slowest worker's D steps + feedback, 0); server other = wall - generate - "
            "wait - backward.",
            load,
        ],
    )
