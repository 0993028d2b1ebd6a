"""Section protocol: the price of the protocol, MD-GAN N=1 vs the standalone GAN, wall per iteration."""

from __future__ import annotations

import argparse

from jobs import Runner, Spec
from mdgan_dist.experiments.formatting import ms, one_decimal, ratio
from mdgan_dist.experiments.tables import keyed

from .table import Table


def section_protocol(args: argparse.Namespace, runner: Runner) -> Table:  # noqa: ARG001 -- a Section's signature
    runs = [
        ("standalone, train.threads=1", runner(Spec("standalone", 0))),
        ("MD-GAN N=1, train.threads=1", runner(Spec("mdgan", 1))),
        ("MD-GAN N=1, mdgan.overlap=true", runner(Spec("mdgan", 1, ("mdgan.overlap=true",)))),
        ("standalone, default threads (information)", runner(Spec("standalone", 0, threads=None))),
    ]
    baseline = runs[0][1].wall
    rows = [
        {
            "run": name,
            "threads": run.threads,
            "threads_setting": run.cfg.train.threads or "default",
            "wall_seconds": run.wall,
            "iterations_per_second": 1 / run.wall,
            "vs_standalone": run.wall / baseline,
        }
        for name, run in runs
    ]
    price = rows[1]["vs_standalone"]
    return Table(
        "Price of the protocol: MD-GAN N=1 vs the standalone GAN",
        [
            keyed("run", "run"),
            keyed("threads_setting", "train.threads"),
            keyed("threads", "threads used"),
            keyed("wall_seconds", "wall ms/iter", ms),
            keyed("iterations_per_second", "it/s", one_decimal),
            keyed("vs_standalone", "/ standalone", ratio),
        ],
        rows,
        notes=[
            "Median of iteration_seconds, first 10% of iterations dropped. Both sides run train.threads=1: "
            "MD-GAN's server and worker take turns (G, then D, then G), so one thread per process is the "
            "fair match for the one-process GAN (on a 2-core box the two share the cores); the last row is the standalone GAN with the "
            "trainer's default threads (all cores for its one process), for information.",
            f"MD-GAN N=1 / standalone = {price:.3f} (goal: at most 1.10).",
        ],
        summary={"mdgan_over_standalone": price, "overlap_over_standalone": rows[2]["vs_standalone"]},
    )
