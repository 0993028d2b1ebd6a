"""`open_dataset`: one entry point that picks the backend named by `data.name`."""

from __future__ import annotations

from collections.abc import Callable

from mdgan_dist.config import DataConfig
from mdgan_dist.data.base import PARTS, ImageDataset
from mdgan_dist.data.imagefolder import open_imagefolder
from mdgan_dist.data.mnist5k import open_mnist5k
from mdgan_dist.data.torchvision_sets import SOURCES, open_torchvision
from mdgan_dist.errors import ConfigError

_OPENERS: dict[str, Callable[[DataConfig, str], ImageDataset]] = {
    "mnist5k": open_mnist5k,
    **dict.fromkeys(SOURCES, open_torchvision),
    "imagefolder": open_imagefolder,
}
DATASETS = tuple(_OPENERS)


def open_dataset(cfg: DataConfig, part: str) -> ImageDataset:
    """The `part` ("train" or "heldout") of the dataset `cfg` names; images are decoded lazily."""
    if part not in PARTS:
        raise ValueError(f"part={part!r} is not one of {', '.join(PARTS)}")
    if cfg.name not in _OPENERS:
        raise ConfigError(f"data.name={cfg.name!r} is not a known dataset: use one of {', '.join(DATASETS)}")
    if cfg.image_size is not None and cfg.image_size < 1:
        raise ConfigError(f"data.image_size={cfg.image_size}: must be >= 1, or unset to keep the native size")
    return _OPENERS[cfg.name](cfg, part)
