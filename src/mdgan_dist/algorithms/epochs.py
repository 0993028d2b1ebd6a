"""Epochs of local data as iterations: how often MD-GAN swaps and FL-GAN averages."""

from __future__ import annotations

import math


def iterations_per_epochs(shard_sizes: list[int], batch_size: int, epochs: float) -> int:
    """Iterations in which a worker sees E epochs of its shard: ceil(m * E / b), m the mean shard
    size (one period for all, even when non-iid shards differ in size), at least 1."""
    mean_shard = sum(shard_sizes) / len(shard_sizes)
    return max(1, math.ceil(mean_shard * epochs / batch_size))
