"""The standard DCGAN pair for C x 32 x 32 images (Radford et al. 2016), with 4x4 stride-2 convs.

G: z -> 256x4x4 -> 128x8x8 -> 64x16x16 -> Cx32x32 (BatchNorm, ReLU, tanh). The first layer is the
usual 4x4 transposed conv on a 1x1 input, written as the equivalent bias-free FC.
D: the mirror image with LeakyReLU 0.2 and no BatchNorm at all (see cnn.py), then a 4x4 conv to
one logit (plus one per class for ACGAN).
"""

from __future__ import annotations

import torch
from torch import nn

from mdgan_dist.models.cnn import UpsamplingGenerator
from mdgan_dist.models.common import dcgan_init, scaled, squeeze_single_output

CHANNELS = (64, 128, 256)  # D's channels, 32 -> 16 -> 8 -> 4 pixels


def generator(z_dim: int, width: float, image_shape: tuple[int, int, int]) -> nn.Module:
    return UpsamplingGenerator(z_dim, width, 256, 4, (128, 64, image_shape[0]), kernel_size=4)


class DCGANDiscriminator(nn.Module):
    def __init__(self, width: float, image_shape: tuple[int, int, int], outputs: int) -> None:
        super().__init__()
        n_in = image_shape[0]
        layers: list[nn.Module] = []
        for channels in CHANNELS:
            n_out = scaled(channels, width)
            layers += [nn.Conv2d(n_in, n_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            n_in = n_out
        self.net = nn.Sequential(*layers, nn.Conv2d(n_in, outputs, 4), nn.Flatten(1))  # 4x4 -> [b, outputs]
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_single_output(self.net(x))
