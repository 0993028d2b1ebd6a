"""A user's own images: `data.root/<class name>/<image files>`, torchvision's ImageFolder layout.

Labels come from folder names, so they are known without decoding a single image; each image is
decoded, converted to grey or RGB and resized only when it is requested.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.datasets.folder import ImageFolder
from torchvision.transforms.functional import pil_to_tensor

from mdgan_dist.config import DataConfig
from mdgan_dist.data.base import ImageDataset
from mdgan_dist.errors import ConfigError

# Images 0, 10, 20, ... in sorted order (by class, then path) are held out: a deterministic 10%
# that is never empty.
HELDOUT_EVERY = 10
_PIL_MODES = {1: "L", 3: "RGB"}


class ImageFolderDataset(ImageDataset):
    def __init__(self, paths: list[str], labels: torch.Tensor, num_classes: int, channels: int, size: int) -> None:
        super().__init__(labels, (channels, size, size), num_classes, size)
        self._paths = paths
        self._mode = _PIL_MODES[channels]

    def _raw(self, index: int) -> torch.Tensor:
        with Image.open(self._paths[index]) as image:
            return pil_to_tensor(image.convert(self._mode))


def open_imagefolder(cfg: DataConfig, part: str) -> ImageFolderDataset:
    if cfg.image_size is None:
        raise ConfigError(
            "data.name=imagefolder needs data.image_size: images in a folder can have any size, and "
            "the models need one; set data.image_size (e.g. data.image_size=64)"
        )
    if cfg.channels not in _PIL_MODES:
        raise ConfigError(f"data.channels={cfg.channels}: must be 1 (grey) or 3 (RGB)")
    root = Path(cfg.root).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(
            f"data.name=imagefolder: the folder {root} (data.root={cfg.root!r}) does not exist; set "
            "data.root to a folder holding one subfolder of images per class"
        )
    try:
        # Only scans file names; no image is opened.
        folder = ImageFolder(str(root))
    except FileNotFoundError as error:
        raise ConfigError(
            f"data.name=imagefolder: no usable images in {root}: {str(error).rstrip('.')}. "
            "Expected one subfolder per class, each holding at least one image file"
        ) from error
    heldout = part == "heldout"
    samples = [sample for i, sample in enumerate(folder.samples) if (i % HELDOUT_EVERY == 0) == heldout]
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return ImageFolderDataset([path for path, _ in samples], labels, len(folder.classes), cfg.channels, cfg.image_size)
