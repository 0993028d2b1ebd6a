"""Who gets which generated batch, and when and where discriminators move."""

from __future__ import annotations

import torch

from mdgan_dist.algorithms.epochs import iterations_per_epochs
from mdgan_dist.algorithms.mdgan.roster import Roster
from mdgan_dist.algorithms.training import Schedule
from mdgan_dist.config import Config
from mdgan_dist.distributed.protocol import SwapOrder
from mdgan_dist.seeding import generator


def feedback_batch(worker: int, k: int) -> int:
    """Index of the batch X_g(n) that worker n (0-based) computes its feedback on."""
    return worker % k


def training_batch(worker: int, k: int) -> int:
    """Index of the batch X_d(n) that worker n trains its discriminator against."""
    return (worker + 1) % k


def swap_period(shard_sizes: list[int], batch_size: int, epochs: float) -> int | None:
    """Iterations between swaps; None when never (E = 0, or a single worker)."""
    if epochs == 0 or len(shard_sizes) < 2:
        return None
    return iterations_per_epochs(shard_sizes, batch_size, epochs)


def derangement(num_workers: int, seed: int, swap_index: int) -> list[int]:
    """A uniformly random permutation without fixed points: worker n sends its D to targets[n].

    Rejection sampling: about e draws on average, and every rank can recompute it.
    """
    if num_workers < 2:
        raise ValueError("a derangement needs at least 2 workers")
    rng = generator(seed, "swap", swap_index)
    while True:
        targets = torch.randperm(num_workers, generator=rng).tolist()
        if all(target != worker for worker, target in enumerate(targets)):
            return targets


def swap_orders(roster: Roster, seed: int, swap_index: int, iteration: int) -> list[tuple[int, SwapOrder]]:
    """Where every live worker sends its D after `iteration` and where its next one comes from, as
    (rank, order): one per worker, a process's in slot order; none with fewer than 2 workers."""
    if roster.workers < 2:
        return []
    targets = derangement(roster.workers, seed, swap_index)
    sources = {target: worker for worker, target in enumerate(targets)}
    return [
        (
            rank,
            SwapOrder(iteration, send_to=roster.address(targets[worker]), receive_from=roster.address(sources[worker])),
        )
        for rank in roster.live
        for worker in roster.positions(rank)
    ]


def control_follows(done: int, iterations: int, period: int | None, checkpoint_every: int) -> bool:
    """Whether the server sends a control message (swap or checkpoint order, or the stop) after
    `done` iterations. The next iteration is then not sent ahead (mdgan.overlap), and the workers
    are told to expect a bare header next."""
    return (
        done == iterations
        or bool(period and done % period == 0)
        or bool(checkpoint_every and done % checkpoint_every == 0)
    )


def control_after(iteration: int, schedule: Schedule, cfg: Config, period: int | None) -> bool:
    """The server's control_follows for iteration `iteration` (0-based), a stop request included:
    asked as the iteration is generated, so the workers learn it with the batches
    (Schedule.stops_after remembers the answer)."""
    return schedule.stops_after(iteration) or control_follows(
        iteration + 1, cfg.train.iterations, period, cfg.checkpoint.every
    )
