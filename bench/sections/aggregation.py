"""Section aggregation: what each rule of mdgan.aggregate costs the server, in this process on one
thread: the rule's call on N workers' feedback against the server's whole iteration (generate k
batches, aggregate with the mean, G's step), at N = 10 and 50 with k = ceil(log2 N), and the bytes
the rule adds to an iteration."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from functools import partial

import torch

from jobs import Runner
from mdgan_dist.algorithms.aggregation import AGGREGATIONS, Judgements, aggregate
from mdgan_dist.algorithms.mdgan.schedule import feedback_batch
from mdgan_dist.compose import compose
from mdgan_dist.config import Aggregate, MDGANConfig, resolved_k
from mdgan_dist.experiments.formatting import ms, ratio
from mdgan_dist.experiments.tables import keyed
from mdgan_dist.job import plan_data
from mdgan_dist.resources import one_intra_op_thread

from .role_compute import server_step
from .table import Table
from .timing import median_seconds

WORKER_COUNTS = (10, 50)
CLASSES_PER_WORKER = 2  # the class sets of data.split=classes with 2 classes a worker


def judgements(workers: int, k: int, batch: int, shape: tuple[int, int, int], classes: int) -> Judgements:
    """What the server holds after an iteration: N feedbacks of random values (what arrives does
    not change the cost), with every rule's extra inputs."""
    return Judgements(
        feedbacks=[torch.randn(batch, *shape) * 1e-3 for _ in range(workers)],
        batch_of=[feedback_batch(n, k) for n in range(workers)],
        num_batches=k,
        labels=torch.randint(classes, (k, batch)),
        verdicts=[torch.randn(batch) for _ in range(workers)],
        holds=[frozenset((n + step) % classes for step in range(CLASSES_PER_WORKER)) for n in range(workers)],
    )


def aggregate_afresh(rule: Aggregate, judged: Judgements) -> torch.Tensor:
    """The rule on a copy of `judged` that has computed nothing yet: Judgements keeps each batch's
    median once computed, which would leave the median's later calls nothing to do."""
    return aggregate(rule, replace(judged))


def section_aggregation(args: argparse.Namespace, runner: Runner) -> Table:
    cfg = compose(runner.shared_overrides())
    rows = []
    with one_intra_op_thread():
        cpu = torch.device("cpu")
        plan = plan_data(cfg, 1)
        shape, classes, batch = plan.image_shape, plan.num_classes, cfg.train.batch_size
        values = math.prod(shape)
        reps = args.repetitions
        for workers in WORKER_COUNTS:
            k = resolved_k(MDGANConfig(), workers)
            iteration = median_seconds(server_step(cfg, shape, classes, k, cpu, workers), reps, time.thread_time)
            judged = judgements(workers, k, batch, shape, classes)
            for name, rule in AGGREGATIONS.items():
                seconds = median_seconds(partial(aggregate_afresh, name, judged), reps * 3, time.thread_time)
                rows.append(
                    {
                        "workers": workers,
                        "k": k,
                        "rule": name,
                        "rule_seconds": seconds,
                        "iteration_seconds": iteration,
                        "share": seconds / iteration,
                        "extra_bytes": workers * batch * 4 if rule.verdicts else 0,
                        "iteration_bytes": 3 * workers * batch * values * 4,
                    }
                )
    return Table(
        "Cost of the aggregation rules (mdgan.aggregate) at the server",
        [
            keyed("workers", "N"),
            keyed("k", "k"),
            keyed("rule", "rule"),
            keyed("rule_seconds", "rule ms", ms),
            keyed("iteration_seconds", "server iteration ms", ms),
            keyed("share", "rule / iteration", ratio),
            keyed("extra_bytes", "extra bytes per iteration"),
            keyed("iteration_bytes", "iteration's bytes (3bdN float32)"),
        ],
        rows,
        notes=[
            "CPU time on one thread, medians: the rule's call on N workers' feedback, against the server's whole "
            "iteration with the mean (generate k batches, aggregate, G's step, the moving average; "
            "role_compute.server_step). The rule's own share is the rule's time less the mean's. forgiving's extra "
            "bytes are the verdicts (b float32 values a worker); class_aware's class sets (one row of C values a "
            "worker) travel once, after the handshake. Goal: under 0.02 of the server's iteration."
        ],
        summary={"largest_share": max(row["share"] for row in rows)},
    )
