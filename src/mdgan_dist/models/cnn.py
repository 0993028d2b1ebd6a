"""The paper's CNN pairs for MNIST (1x28x28) and CIFAR-10 (3x32x32).

G: FC to a small feature map, then 5x5 transposed convolutions that each double H and W, tanh.
D: six 3x3 convolutions with 16 .. 512 channels, minibatch discrimination, FC to one logit (plus
one per class for ACGAN). The
same discriminator serves both datasets; only its input channels differ. No BatchNorm or dropout
in D: the trainer evaluates D on separate batches and D's output must not depend on its mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from mdgan_dist.models.common import dcgan_init, he_init, scaled, squeeze_single_output
from mdgan_dist.models.minibatch import MinibatchDiscrimination

DISC_CHANNELS = (16, 32, 64, 128, 256, 512)
MINIBATCH_KERNELS = 100  # B in Salimans et al.; scaled by width like a channel count
MINIBATCH_KERNEL_DIM = 5  # C in Salimans et al.; a distance space, not a width: never scaled


class UpsamplingGenerator(nn.Module):
    """z -> FC -> base_channels x base_size x base_size -> stride-2 transposed convs -> tanh.

    `channels` lists each transposed convolution's output channels, the image channels last; all
    sizes but the image channels are scaled by `width`. BatchNorm2d + ReLU follow every layer but
    the last (BatchNorm2d rather than 1d after the FC so that a batch of one sample still works).
    """

    def __init__(
        self,
        z_dim: int,
        width: float,
        base_channels: int,
        base_size: int,
        channels: Sequence[int],
        kernel_size: int,
    ) -> None:
        super().__init__()
        hidden = [scaled(c, width) for c in (base_channels, *channels[:-1])]
        sizes = [*hidden, channels[-1]]
        # Padding and output padding that make every layer exactly double H and W.
        padding = (kernel_size - 1) // 2
        output_padding = 2 + 2 * padding - kernel_size
        # No bias before BatchNorm: its shift makes one redundant.
        layers: list[nn.Module] = [
            nn.Linear(z_dim, sizes[0] * base_size * base_size, bias=False),
            nn.Unflatten(1, (sizes[0], base_size, base_size)),
        ]
        for i, (n_in, n_out) in enumerate(pairwise(sizes)):
            layers += [
                nn.BatchNorm2d(n_in),
                nn.ReLU(),
                nn.ConvTranspose2d(
                    n_in,
                    n_out,
                    kernel_size,
                    stride=2,
                    padding=padding,
                    output_padding=output_padding,
                    bias=i == len(sizes) - 2,  # only the image layer has no BatchNorm after it
                ),
            ]
        self.net = nn.Sequential(*layers, nn.Tanh())
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConvDiscriminator(nn.Module):
    """Six 3x3 convs (strides 2, 1, 2, 1, 2, 1; LeakyReLU 0.2), minibatch discrimination, FC."""

    def __init__(self, width: float, image_shape: tuple[int, int, int], outputs: int) -> None:
        super().__init__()
        n_in, h, w = image_shape
        layers: list[nn.Module] = []
        for i, channels in enumerate(DISC_CHANNELS):
            stride = 2 if i % 2 == 0 else 1
            n_out = scaled(channels, width)
            layers += [nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1), nn.LeakyReLU(0.2)]
            n_in = n_out
            # A 3x3 conv with padding 1 maps n pixels to ceil(n / stride).
            h, w = -(-h // stride), -(-w // stride)
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.minibatch = MinibatchDiscrimination(n_in * h * w, scaled(MINIBATCH_KERNELS, width), MINIBATCH_KERNEL_DIM)
        self.logit = nn.Linear(self.minibatch.out_features, outputs)
        # He rather than DCGAN init: with N(0, 0.02) the six convs shrink the features so much that
        # every minibatch distance is ~0, exp(-d) rounds to 1 and D's output no longer depends on x.
        # The minibatch tensor keeps its own initialisation.
        self.features.apply(he_init)
        self.logit.apply(he_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_single_output(self.logit(self.minibatch(self.features(x))))


def mnist_generator(z_dim: int, width: float, image_shape: tuple[int, int, int]) -> nn.Module:
    """z -> 6272 (128x7x7) -> 32x14x14 -> 1x28x28."""
    return UpsamplingGenerator(z_dim, width, 128, 7, (32, image_shape[0]), kernel_size=5)


def cifar10_generator(z_dim: int, width: float, image_shape: tuple[int, int, int]) -> nn.Module:
    """z -> 6144 (384x4x4) -> 192x8x8 -> 96x16x16 -> 3x32x32."""
    return UpsamplingGenerator(z_dim, width, 384, 4, (192, 96, image_shape[0]), kernel_size=5)
