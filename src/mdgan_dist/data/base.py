"""The dataset interface every backend implements: lazy, labelled images in [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

PARTS = ("train", "heldout")


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Labelled images; `__getitem__` decodes, scales and resizes only the requested sample.

    Subclasses provide `_raw(i)`, the stored uint8 image (C x H x W). `labels` is known up front
    so that shards can be cut without touching any image.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        image_shape: tuple[int, int, int],
        num_classes: int,
        image_size: int | None,
    ) -> None:
        self.labels = labels.to(torch.int64)
        self.image_shape = image_shape
        self.num_classes = num_classes
        self._image_size = image_size

    def _raw(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = int(index)
        image = self._raw(index).to(torch.float32) / 127.5 - 1.0
        size = self._image_size
        if size is not None and tuple(image.shape[-2:]) != (size, size):
            image = F.interpolate(
                image.unsqueeze(0), size=(size, size), mode="bilinear", antialias=True, align_corners=False
            ).squeeze(0)
            # Rounding in the filter can step a hair outside the range the discriminator expects.
            image = image.clamp_(-1.0, 1.0)
        return image, int(self.labels[index])


class TensorImageDataset(ImageDataset):
    """Images already held in memory as one uint8 tensor (N x C x H x W, a view is fine)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int, image_size: int | None) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise ValueError(
                f"expected uint8 images N x C x H x W and N labels, got {images.dtype} "
                f"{tuple(images.shape)} and {len(labels)} labels"
            )
        channels, height, width = images.shape[1:]
        shape = (channels, image_size, image_size) if image_size is not None else (channels, height, width)
        super().__init__(labels, shape, num_classes, image_size)
        self._images = images

    def _raw(self, index: int) -> torch.Tensor:
        return self._images[index]


class Relabelled(ImageDataset):
    """Another dataset's images under other labels (data.clusters: each image's cluster)."""

    def __init__(self, base: ImageDataset, labels: torch.Tensor, num_classes: int) -> None:
        if len(labels) != len(base):
            raise ValueError(f"{len(labels)} labels for {len(base)} images")
        super().__init__(labels, base.image_shape, num_classes, None)
        self.base = base

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.base[index][0], int(self.labels[index])
