"""Federated averaging of FL-GAN's models: what travels and how it is averaged."""

from __future__ import annotations

import torch
from torch import nn


def model_tensors(generator: nn.Module, discriminator: nn.Module) -> list[torch.Tensor]:
    """What FL-GAN averages, in a fixed order: the floating-point state of G, then of D. Integer
    counters (BatchNorm's num_batches_tracked) stay local; they are equal on every worker anyway."""
    return [
        tensor
        for module in (generator, discriminator)
        for tensor in module.state_dict().values()
        if tensor.is_floating_point()
    ]


def weighted_average(flats: list[torch.Tensor], shard_sizes: list[int]) -> torch.Tensor:
    """sum_n (m_n / sum m) * theta_n, accumulated in float64 so the mean does not depend on the order."""
    total = sum(shard_sizes)
    average = torch.zeros_like(flats[0], dtype=torch.float64)
    for flat, size in zip(flats, shard_sizes, strict=True):
        average += flat.double() * (size / total)
    return average.to(flats[0].dtype)
