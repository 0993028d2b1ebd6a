"""Minibatch discrimination (Salimans et al., "Improved Techniques for Training GANs", 2016, 3.2).

Lets the discriminator see how close a sample is to the other samples of its batch, so that a
generator collapsing onto a few modes is easy to spot.
"""

from __future__ import annotations

import torch
from torch import nn


class MinibatchDiscrimination(nn.Module):
    """f [b, A] -> [b, A + B]: the features followed by one closeness statistic per kernel.

    A learned tensor T [A, B, C] maps each sample's features to B rows M_i,k in R^C; then
    o(x_i)_k = sum_{j != i} exp(-||M_i,k - M_j,k||_1). A batch of one sample gives o = 0.
    """

    def __init__(self, in_features: int, kernels: int, kernel_dim: int = 5) -> None:
        super().__init__()
        self.kernels = kernels
        self.kernel_dim = kernel_dim
        # N(0, 0.05) as in the authors' code (improved-gan, MinibatchLayer).
        self.T = nn.Parameter(torch.randn(in_features, kernels * kernel_dim) * 0.05)

    @property
    def out_features(self) -> int:
        return self.T.shape[0] + self.kernels

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b = features.shape[0]
        m = (features @ self.T).view(b, self.kernels, self.kernel_dim)
        distances = (m.unsqueeze(1) - m.unsqueeze(0)).abs().sum(dim=3)  # [b, b, B]
        # Mask rather than subtract exp(0) = 1: a sample never counts itself, whatever the dtype.
        others = 1.0 - torch.eye(b, dtype=features.dtype, device=features.device)
        closeness = (torch.exp(-distances) * others.unsqueeze(2)).sum(dim=1)  # [b, B]
        return torch.cat([features, closeness], dim=1)
