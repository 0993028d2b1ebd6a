"""Section guard: what the non-finite guard costs, in this process on one thread: the checks a
worker and the server run every iteration, against the compute of the iteration they guard."""

from __future__ import annotations

import argparse
import time

import torch

from jobs import Runner
from mdgan_dist.algorithms.finite import all_finite, require_finite
from mdgan_dist.algorithms.mdgan.compute import GeneratorCompute
from mdgan_dist.algorithms.mdgan.discriminators import DiscriminatorCompute
from mdgan_dist.compose import compose
from mdgan_dist.config import resolved_k
from mdgan_dist.experiments.formatting import ms, ratio
from mdgan_dist.experiments.tables import keyed
from mdgan_dist.resources import one_intra_op_thread

from .role_compute import one_shard, server_step, worker_step
from .table import Table
from .timing import median_seconds

WORKERS = 4  # feedbacks the server checks


def section_guard(args: argparse.Namespace, runner: Runner) -> Table:
    cfg = compose(runner.shared_overrides())
    with one_intra_op_thread():
        cpu = torch.device("cpu")
        shape, classes, shard = one_shard(cfg)
        worker = DiscriminatorCompute(cfg, shape, classes, [shard], [0], cpu)
        k = resolved_k(cfg.mdgan, WORKERS)
        server = GeneratorCompute(cfg, shape, classes, k, cpu)
        generated = server.generate()
        generated.batches.sum().backward()  # G's gradients exist, as after its backward
        feedbacks = [torch.randn(cfg.train.batch_size, *shape) for _ in range(WORKERS)]

        def worker_guard() -> None:  # Worker.require_finite
            require_finite([0.5], 1, 0, "the D loss")
            worker.finite_slots()

        def server_guard() -> None:  # Server.usable_answers' usual case, then GeneratorCompute.step's check
            require_finite([0.5, 0.7] * WORKERS, 0, 0, "the losses")
            all_finite(feedbacks)
            all_finite(param.grad for param in server.generator.parameters() if param.grad is not None)

        reps = args.repetitions
        rows = []
        for role, guard, iteration in (
            ("worker", worker_guard, worker_step(cfg, shape, classes, shard, 1, cpu)),
            (f"server, N={WORKERS}", server_guard, server_step(cfg, shape, classes, k, cpu, WORKERS)),
        ):
            guard_seconds = median_seconds(guard, reps * 10, time.thread_time)
            iteration_seconds = median_seconds(iteration, reps, time.thread_time)
            rows.append(
                {
                    "role": role,
                    "iteration_seconds": iteration_seconds,
                    "guard_seconds": guard_seconds,
                    "share": guard_seconds / iteration_seconds,
                }
            )
    # A synchronous iteration runs the server's part, then a worker's (the others alongside).
    rows.append(
        {
            "role": "iteration (server + a worker)",
            "iteration_seconds": sum(row["iteration_seconds"] for row in rows),
            "guard_seconds": sum(row["guard_seconds"] for row in rows),
        }
    )
    rows[-1]["share"] = rows[-1]["guard_seconds"] / rows[-1]["iteration_seconds"]
    return Table(
        "Cost of the non-finite guard",
        [
            keyed("role", "role"),
            keyed("iteration_seconds", "iteration compute ms", ms),
            keyed("guard_seconds", "guard ms", ms),
            keyed("share", "guard / iteration", ratio),
        ],
        rows,
        notes=[
            "CPU time on one thread, medians: the checks a role runs every iteration (a worker: its D losses "
            "and its parameters after the steps; the server: every answer's losses and feedback, and G's "
            "gradient) against the compute of that iteration (role_compute); the last row is one synchronous "
            "iteration's path, the server's part then a worker's. Goal: under 0.02 of an iteration."
        ],
        summary={"iteration_share": rows[-1]["share"]},
    )
