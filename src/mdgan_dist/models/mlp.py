"""The paper's MNIST MLP pair: G z -> 512 -> 512 -> d, D d -> 512 -> 512 -> outputs, with d = C*H*W.

PyTorch's default initialisation; flattening makes the pair work for any image shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from mdgan_dist.models.common import scaled, squeeze_single_output

HIDDEN = (512, 512)


def _mlp(sizes: Sequence[int], activation: type[nn.Module], **activation_args: float) -> list[nn.Module]:
    """Linear layers through `sizes`, with the activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        if i > 0:
            layers.append(activation(**activation_args))
        layers.append(nn.Linear(n_in, n_out))
    return layers


class MLPGenerator(nn.Module):
    def __init__(self, z_dim: int, width: float, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        sizes = [z_dim, *(scaled(n, width) for n in HIDDEN), math.prod(image_shape)]
        self.net = nn.Sequential(*_mlp(sizes, nn.ReLU), nn.Tanh(), nn.Unflatten(1, image_shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    def __init__(self, width: float, image_shape: tuple[int, int, int], outputs: int) -> None:
        super().__init__()
        sizes = [math.prod(image_shape), *(scaled(n, width) for n in HIDDEN), outputs]
        self.net = nn.Sequential(nn.Flatten(), *_mlp(sizes, nn.LeakyReLU, negative_slope=0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_single_output(self.net(x))
