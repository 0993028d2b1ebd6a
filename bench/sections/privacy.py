"""Section privacy: what DP-SGD discriminators (privacy.*) cost a worker process, in this process on
one thread: its iteration with W workers, plain and private (each drawn record's gradient alone,
clipped, the noise), at W = 1 and 10, in rounds that alternate the two."""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from jobs import Runner
from mdgan_dist.compose import compose
from mdgan_dist.experiments.formatting import ms, ratio
from mdgan_dist.experiments.tables import keyed
from mdgan_dist.resources import one_intra_op_thread

from .role_compute import one_shard, worker_step
from .table import Table
from .timing import median_seconds

SLOTS = (1, 10)
ROUNDS = 3  # each a median of the repetitions, plain then private: the ratio's spread
NOISE_MULTIPLIER = 1.0  # the noise's cost does not depend on its scale


def section_privacy(args: argparse.Namespace, runner: Runner) -> Table:
    cfg = compose(runner.shared_overrides())
    private = dataclasses.replace(cfg, privacy=dataclasses.replace(cfg.privacy, epsilon=10.0))
    rows = []
    with one_intra_op_thread():
        cpu = torch.device("cpu")
        shape, classes, shard = one_shard(cfg)
        for slots in SLOTS:
            plain_step = worker_step(cfg, shape, classes, shard, slots, cpu)
            private_step = worker_step(private, shape, classes, shard, slots, cpu, NOISE_MULTIPLIER)
            plain, dp = [], []
            for _ in range(ROUNDS):
                plain.append(median_seconds(plain_step, args.repetitions, time.thread_time))
                dp.append(median_seconds(private_step, args.repetitions, time.thread_time))
            ratios = [b / a for a, b in zip(plain, dp, strict=True)]
            rows.append(
                {
                    "slots": slots,
                    "plain_seconds": sorted(plain)[ROUNDS // 2],
                    "private_seconds": sorted(dp)[ROUNDS // 2],
                    "ratio": sorted(ratios)[ROUNDS // 2],
                    "ratio_range": f"{ratio(min(ratios))}-{ratio(max(ratios))}",
                }
            )
    return Table(
        "Cost of DP-SGD discriminators (privacy.*) in a worker process's iteration",
        [
            keyed("slots", "workers in the process (W)"),
            keyed("plain_seconds", "plain ms", ms),
            keyed("private_seconds", "private ms", ms),
            keyed("ratio", "private / plain", ratio),
            keyed("ratio_range", "range over rounds"),
        ],
        rows,
        notes=[
            "CPU time on one thread: a worker process's iteration (role_compute.worker_step: L D steps, the "
            f"feedback), the median of the repetitions, in {ROUNDS} rounds alternating plain and private; the "
            "middle value of each over the rounds, and the range of the round's ratios. Private: each D step's real half record by "
            "record (torch.func.vmap over grad), clipped, summed, noised; its Poisson batches hold b records on "
            "average, as the plain one holds b."
        ],
        summary={"largest_ratio": max(row["ratio"] for row in rows)},
    )
