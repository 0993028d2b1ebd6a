"""The packed messages of an MD-GAN iteration: one buffer per peer and direction, header included.

A packet is one flat byte buffer: the 64-byte protocol header, then the payload in the wire dtype
(comm.dtype). It is allocated once on the wire device and reused every iteration, so an
iteration moves exactly one message each way between the server and a worker, with no pickling
and no allocation on the hot path.
"""

from __future__ import annotations

import math

import torch

from mdgan_dist.distributed.protocol import HEADER_LEN


def wire_dtype(name: str) -> torch.dtype:
    """comm.dtype (float32, bfloat16 or float16; config.WIRE_DTYPES) as a torch dtype."""
    return getattr(torch, name)


HEADER_BYTES = HEADER_LEN * 8


class Packet:
    """Header (int64 x HEADER_LEN) and payload (`numel` values of `dtype`) in one byte buffer."""

    def __init__(self, numel: int, dtype: torch.dtype, device: torch.device) -> None:
        item = torch.empty((), dtype=dtype).element_size()
        self.buffer = torch.zeros(HEADER_BYTES + numel * item, dtype=torch.uint8, device=device)
        self.header = self.buffer[:HEADER_BYTES].view(torch.int64)
        self.payload = self.buffer[HEADER_BYTES:].view(dtype)


class BatchMessage(Packet):
    """server -> worker: X_d and X_g (2 x b x C x H x W), then their class labels (2 x b) for ACGAN."""

    TRAINING, FEEDBACK = 0, 1  # row of X_d and of X_g

    def __init__(
        self,
        batch: int,
        image_shape: tuple[int, int, int],
        num_classes: int | None,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        """num_classes: None when unconditional (config.validate_wire_labels checked that the
        labels are exact in the wire dtype)."""
        image_values = 2 * batch * math.prod(image_shape)
        super().__init__(image_values + (2 * batch if num_classes is not None else 0), dtype, device)
        self.images = self.payload[:image_values].view(2, batch, *image_shape)
        self.labels = self.payload[image_values:].view(2, batch) if num_classes is not None else None

    def put(self, row: int, images: torch.Tensor, labels: torch.Tensor | None) -> None:
        self.images[row].copy_(images)
        if self.labels is not None:
            self.labels[row].copy_(labels)


class FeedbackMessage(Packet):
    """worker -> server: the error feedback F_n (b x C x H x W)."""

    def __init__(self, batch: int, image_shape: tuple[int, int, int], dtype: torch.dtype, device: torch.device) -> None:
        super().__init__(batch * math.prod(image_shape), dtype, device)
        self.feedback = self.payload.view(batch, *image_shape)
