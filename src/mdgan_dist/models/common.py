"""Helpers shared by every architecture: width scaling and initialisations."""

from __future__ import annotations

import torch
from torch import nn


def scaled(size: int, width: float) -> int:
    """A hidden size or channel count of the paper's architecture, scaled by `model.width`."""
    return max(1, round(size * width))


def squeeze_single_output(logits: torch.Tensor) -> torch.Tensor:
    """[b, 1] -> [b], the real/fake logit; [b, 1 + classes] (ACGAN) stays as it is."""
    return logits.squeeze(1) if logits.shape[1] == 1 else logits


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. 2016: weights N(0, 0.02), BatchNorm scales N(1, 0.02), biases 0.

    Use as `model.apply(dcgan_init)`; draws from torch's global RNG, so seeded builds repeat.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def he_init(module: nn.Module) -> None:
    """He et al. 2015 for LeakyReLU(0.2) layers, biases 0: keeps activations at scale through a deep
    stack without BatchNorm, where N(0, 0.02) shrinks them towards 0. Use as `model.apply(he_init)`.
    """
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
