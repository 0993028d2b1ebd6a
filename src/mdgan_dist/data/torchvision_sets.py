"""MNIST, Fashion-MNIST and CIFAR-10 read by torchvision from a local root; never downloaded.

torchvision only says "Dataset not found. You can use download=True", which is no help on a cluster
node without internet, so the files it needs are checked first and a missing one is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets

from mdgan_dist.config import DataConfig
from mdgan_dist.data.base import TensorImageDataset
from mdgan_dist.errors import ConfigError

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class _Source:
    cls: type[datasets.VisionDataset]
    folder: str  # under data.root, where torchvision looks for `files`
    files: tuple[str, ...]  # all of them must exist, for either split (torchvision checks all)
    how_to_get: str  # what the user should do when files are missing; {folder} and {root} are filled in


def _idx_how_to_get(url: str) -> str:
    return (
        f"download the four IDX files ({url}) into {{folder}}; if only the gzipped .gz files are "
        "there, decompress them in place with `gunzip -k {folder}/*.gz`"
    )


SOURCES = {
    "mnist": _Source(
        datasets.MNIST,
        "MNIST/raw",
        _IDX_FILES,
        _idx_how_to_get("https://ossci-datasets.s3.amazonaws.com/mnist/"),
    ),
    "fashion_mnist": _Source(
        datasets.FashionMNIST,
        "FashionMNIST/raw",
        _IDX_FILES,
        _idx_how_to_get("https://github.com/zalandoresearch/fashion-mnist"),
    ),
    "cifar10": _Source(
        datasets.CIFAR10,
        "cifar-10-batches-py",
        (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
        "download cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) and unpack it "
        "into {root} with `tar -xzf cifar-10-python.tar.gz -C {root}`, which creates {folder}",
    ),
}


def open_torchvision(cfg: DataConfig, part: str) -> TensorImageDataset:
    """The train split as the train part and the test split as the held-out part."""
    source = SOURCES[cfg.name]
    root = Path(cfg.root).expanduser().resolve()
    folder = root / source.folder
    missing = [name for name in source.files if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"data.name={cfg.name}: expected the files {', '.join(source.files)} in {folder}; "
            f"missing: {', '.join(missing)}. To fix: "
            + source.how_to_get.format(folder=folder, root=root)
            + f"; or set data.root to the folder that holds {source.folder}/ (now data.root={cfg.root!r})"
        )
    try:
        dataset = source.cls(str(root), train=part == "train", download=False)
    except RuntimeError as error:  # present but failing torchvision's own checks (CIFAR-10: md5)
        raise ConfigError(
            f"data.name={cfg.name}: the files in {folder} are there but torchvision cannot use them "
            "(for cifar10 it checks their md5 sums); they are probably truncated or corrupted: "
            "replace them with fresh copies"
        ) from error
    # `.data` is uint8, N x H x W (MNIST family, a tensor) or N x H x W x C (CIFAR-10, numpy);
    # reading it directly skips torchvision's per-item round trip through PIL.
    images = torch.as_tensor(dataset.data)
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    return TensorImageDataset(images, labels, len(dataset.classes), cfg.image_size)
