"""The packed payload of a TRAIN message: both generated batches and, for ACGAN, their labels."""

from __future__ import annotations

import math

import torch


class BatchMessage:
    """One flat float tensor per worker and iteration: X_d and X_g (2 x b x C x H x W), followed by
    their class labels (2 x b, exact as floats up to 2^24) when model.conditional.

    One buffer, so one message on the wire; server and worker allocate it once and reuse it.
    """

    TRAINING, FEEDBACK = 0, 1  # row of X_d and of X_g

    def __init__(self, batch: int, image_shape: tuple[int, int, int], conditional: bool, device: torch.device) -> None:
        image_values = 2 * batch * math.prod(image_shape)
        self.buffer = torch.empty(image_values + (2 * batch if conditional else 0), device=device)
        self.images = self.buffer[:image_values].view(2, batch, *image_shape)
        self.labels = self.buffer[image_values:].view(2, batch) if conditional else None

    def put(self, row: int, images: torch.Tensor, labels: torch.Tensor | None) -> None:
        self.images[row].copy_(images)
        if self.labels is not None:
            self.labels[row].copy_(labels)

    def batch(self, row: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(images, labels or None) of one row, as D takes them."""
        labels = None if self.labels is None else self.labels[row].long()
        return self.images[row], labels
