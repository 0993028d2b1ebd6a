"""The GAN math every path shares: losses, a discriminator step, the error feedback, the G step.

MD-GAN's server and workers, and any single-process computation of the same round, call these
functions and nothing else, so the distributed result can be pinned to the single-process one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float) -> torch.Tensor:
    """Binary cross-entropy: real samples labelled real_label (1, or 0.9 for one-sided label
    smoothing), generated ones 0."""
    real_targets = torch.full_like(real_logits, real_label)
    return F.binary_cross_entropy_with_logits(real_logits, real_targets) + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """non_saturating: -log D(G(z)); saturating: log(1 - D(G(z))), the paper's original form."""
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()
    if kind == "saturating":
        return -F.softplus(fake_logits).mean()
    raise ValueError(f"unknown generator loss {kind!r}")


def discriminator_step(
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
    real_label: float,
) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = discriminator_loss(discriminator(real), discriminator(fake), real_label)
    loss.backward()
    optimizer.step()
    return loss.item()


def generator_feedback(discriminator: nn.Module, samples: torch.Tensor, kind: str) -> tuple[torch.Tensor, float]:
    """F_n = d J_gen(D_n(X)) / d X: what a worker tells the server about the samples it got."""
    samples = samples.detach().requires_grad_(True)
    loss = generator_loss(discriminator(samples), kind)
    (feedback,) = torch.autograd.grad(loss, samples)
    return feedback, loss.item()


def aggregate_feedback(feedbacks: list[torch.Tensor], assignment: list[int], num_batches: int) -> torch.Tensor:
    """Upstream gradient for the k generated batches: sum of the F_n per batch, divided by N.

    With F_n the gradient of worker n's mean generator loss, this is the gradient of the mean
    over the N workers of their losses w.r.t. every generated sample.
    """
    upstream = torch.zeros((num_batches, *feedbacks[0].shape), dtype=feedbacks[0].dtype, device=feedbacks[0].device)
    for feedback, batch in zip(feedbacks, assignment):
        upstream[batch] += feedback
    return upstream / len(feedbacks)


def generator_step(optimizer: torch.optim.Optimizer, generated: torch.Tensor, upstream: torch.Tensor) -> None:
    """One backward pass through G from the generated batches (k x b x C x H x W), then Adam."""
    optimizer.zero_grad(set_to_none=True)
    generated.backward(upstream)
    optimizer.step()


def adam(module: nn.Module, lr: float, beta1: float, beta2: float) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(beta1, beta2))
