"""The standard DCGAN pair (Radford et al. 2016) with 4x4 stride-2 convolutions, for C x 28 x 28
(MNIST-like) and C x 32 x 32 (CIFAR-like) images.

G: z -> FC to base x base -> transposed convs that each double H and W (BatchNorm, ReLU), tanh:
   32 x 32: 256x4x4 -> 128x8x8 -> 64x16x16 -> Cx32x32; 28 x 28: 128x7x7 -> 64x14x14 -> Cx28x28.
   The FC is the usual 4x4 transposed conv on a 1x1 input, written as the equivalent bias-free FC.
D: the mirror image with LeakyReLU 0.2 and no BatchNorm at all (see cnn.py), then one conv over
   the whole base x base map to one logit (plus one per class for ACGAN).
"""

from __future__ import annotations

import torch
from torch import nn

from mdgan_dist.models.cnn import UpsamplingGenerator
from mdgan_dist.models.common import dcgan_init, scaled, squeeze_single_output

CHANNELS = (64, 128, 256)  # D's channels, one stride-2 conv each, from the image down
# Image side -> (side of the smallest map, stride-2 layers between it and the image).
LAYOUTS = {28: (7, 2), 32: (4, 3)}


def generator(z_dim: int, width: float, image_shape: tuple[int, int, int]) -> nn.Module:
    base, layers = LAYOUTS[image_shape[1]]
    channels = CHANNELS[:layers][::-1]  # the mirror of D: widest first
    return UpsamplingGenerator(z_dim, width, channels[0], base, (*channels[1:], image_shape[0]), kernel_size=4)


class DCGANDiscriminator(nn.Module):
    def __init__(self, width: float, image_shape: tuple[int, int, int], outputs: int) -> None:
        super().__init__()
        base, layers = LAYOUTS[image_shape[1]]
        n_in = image_shape[0]
        convs: list[nn.Module] = []
        for channels in CHANNELS[:layers]:
            n_out = scaled(channels, width)
            convs += [nn.Conv2d(n_in, n_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            n_in = n_out
        # base x base -> [b, outputs]
        self.net = nn.Sequential(*convs, nn.Conv2d(n_in, outputs, base), nn.Flatten(1))
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_single_output(self.net(x))
