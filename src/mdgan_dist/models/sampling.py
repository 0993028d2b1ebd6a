"""How G is fed and sampled, shared by the training algorithms and the metrics: noise (plus the
class label for ACGAN) becomes G's input one way, and samples to show or score come out one way."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def generator_input(noise: torch.Tensor, labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """What G takes: the noise, followed by the one-hot class label for ACGAN (labels given)."""
    if labels is None:
        return noise
    return torch.cat([noise, F.one_hot(labels, num_classes).to(noise.dtype)], dim=1)


def shown_labels(count: int, num_classes: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The labels of `count` samples to show or score: cycling through the classes, or, given
    weights (data.clusters' sizes), each class its share of `count` (largest remainders), in order."""
    if weights is None:
        return torch.arange(count) % num_classes
    exact = weights.double() / weights.sum() * count
    shares = exact.floor().long()
    shares[(exact - shares).argsort(descending=True, stable=True)[: count - int(shares.sum())]] += 1
    return torch.repeat_interleave(torch.arange(num_classes), shares)


@torch.no_grad()
def sample_images(
    model: nn.Module, noise: torch.Tensor, labels: torch.Tensor | None, num_classes: int, device: torch.device
) -> torch.Tensor:
    """G's samples for showing or scoring: in eval mode (BatchNorm's running statistics, not the
    batch's), in chunks of at most 256, then G back in the mode it was in. On the CPU."""
    was_training = model.training
    model.eval()
    try:
        chunks = []
        for start in range(0, len(noise), 256):
            part = slice(start, start + 256)
            chunk_labels = None if labels is None else labels[part].to(device)
            chunks.append(model(generator_input(noise[part].to(device), chunk_labels, num_classes)).cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks)
