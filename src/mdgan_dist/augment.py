"""Random, differentiable image augmentations from a seeded stream.

Training the evaluation classifier shifts its digits (random_shifts). A discriminator sees every
image, real or generated, through `Augment` (gan.augment): DiffAugment (Zhao et al., "Differentiable
Augmentation for Data-Efficient GAN Training", NeurIPS 2020), against a discriminator learning a
small shard by heart. In the default run it speeds the first thousand iterations and then costs
Frechet distance, so it is off by default (docs/studies.md, "The default run"). Both augmentations are
indexing and masking, so gradients flow through them to the generated images: G's loss, and so a
worker's feedback, is that of D on the augmented samples.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("translation", "cutout")
BACKGROUND = -1.0  # what uncovered or cut-out pixels become: the bottom of the [-1, 1] range
TRANSLATION = 1 / 8  # the largest shift, as a fraction of the side (DiffAugment's)
CUTOUT = 1 / 4  # the side of the cut-out square, as a fraction of the image side


def random_shifts(images: torch.Tensor, max_shift: int, stream: torch.Generator) -> torch.Tensor:
    """Each image moved by its own whole-pixel offset in [-max_shift, max_shift]^2; the uncovered
    border is filled with the background value -1."""
    n, channels, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4, value=BACKGROUND)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=stream)
    rows = (dy + torch.arange(height)).to(images.device)
    cols = (dx + torch.arange(width)).to(images.device)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def random_cutout(images: torch.Tensor, side: int, stream: torch.Generator) -> torch.Tensor:
    """Each image with a side x side square around its own random centre set to the background
    (cut at the border)."""
    n, _, height, width = images.shape
    centre_y = torch.randint(0, height, (n, 1, 1), generator=stream).to(images.device)
    centre_x = torch.randint(0, width, (n, 1, 1), generator=stream).to(images.device)
    rows = torch.arange(height, device=images.device)[None, :, None] - centre_y + side // 2
    cols = torch.arange(width, device=images.device)[None, None, :] - centre_x + side // 2
    inside = (rows >= 0) & (rows < side) & (cols >= 0) & (cols < side)
    return torch.where(inside[:, None], torch.full_like(images, BACKGROUND), images)


def parse_policy(text: str) -> tuple[str, ...]:
    """gan.augment, e.g. "translation,cutout", as the augmentations in the order they apply; ""
    or "none" for none. Raises ValueError naming the unknown ones."""
    names = tuple(name.strip() for name in text.split(",") if name.strip() and name.strip() != "none")
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)}: choose from {', '.join(AUGMENTATIONS)}")
    return names


class Augment:
    """The augmentations of gan.augment, drawn from a stream of their own: what a discriminator
    sees of every batch."""

    def __init__(self, policy: tuple[str, ...], seed: int) -> None:
        self.policy = policy
        self.stream = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        side = images.shape[-1]
        for name in self.policy:
            if name == "translation":
                images = random_shifts(images, max(1, round(side * TRANSLATION)), self.stream)
            else:
                images = random_cutout(images, max(1, round(side * CUTOUT)), self.stream)
        return images

    def state_dict(self) -> dict[str, Any]:
        return {"stream": self.stream.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.set_state(state["stream"])
