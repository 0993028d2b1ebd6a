"""The packed messages of an MD-GAN iteration: one buffer per peer and direction, header included.

A packet is one flat byte buffer: the 64-byte protocol header, float64 statistics when the
packet has them (a FEEDBACK's per-worker losses), then the payload in the wire dtype
(comm.dtype). It is allocated once on the wire device and reused every iteration, so an
iteration moves exactly one message each way between the server and a worker, with no pickling
and no allocation on the hot path. How a packet is framed (alone, or after a bare header) is
exchange.py's.
"""

from __future__ import annotations

import math

import torch

from mdgan_dist.config import WireDtype
from mdgan_dist.distributed.protocol import HEADER_LEN, UNWRITTEN
from mdgan_dist.distributed.transport import Transport
from mdgan_dist.errors import PeerError


def wire_dtype(name: WireDtype) -> torch.dtype:
    """comm.dtype as a torch dtype: its names are torch's."""
    return getattr(torch, name)


HEADER_BYTES = HEADER_LEN * 8
TRAINING, FEEDBACK = 0, 1  # a worker's two batches: X_d (its D trains against it), X_g (feedback on it)
# What each worker reports besides its feedback: one float64 row per worker in the FEEDBACK packet
# (FeedbackMessage.statistics), exact whatever the wire dtype. A new statistic is a new name here;
# the header and the message types stay as they are.
WORKER_STATISTICS = ("d_loss", "g_loss")
STATISTIC_BYTES = 8


class Packet:
    """Header (int64 x HEADER_LEN), `statistics` float64 values, and payload (`numel` values of
    `dtype`) in one byte buffer."""

    def __init__(self, numel: int, dtype: torch.dtype, device: torch.device, statistics: int = 0) -> None:
        item = torch.empty((), dtype=dtype).element_size()
        payload_start = HEADER_BYTES + statistics * STATISTIC_BYTES
        self.buffer = torch.zeros(payload_start + numel * item, dtype=torch.uint8, device=device)
        self.header = self.buffer[:HEADER_BYTES].view(torch.int64)
        self.statistics = self.buffer[HEADER_BYTES:payload_start].view(torch.float64)
        self.payload = self.buffer[payload_start:].view(dtype)

    def arm(self) -> None:
        """Marks the packet before it receives: gloo accepts a message shorter than the buffer
        without a word, so the header's last slot (0 in every header sent) and the payload's last
        value (NaN) show whether a whole packet overwrote them."""
        self.header[-1] = UNWRITTEN
        self.payload[-1:] = float("nan")

    def require_whole(self, transport: Transport, peer: int, stage: str) -> None:
        """After the header checked out: the payload's last value arrived too."""
        if bool(torch.isnan(self.payload[-1:]).any()):
            raise PeerError(
                transport.rank,
                peer,
                stage,
                f"the message ended before the packet's {self.buffer.numel()} bytes (or its last value is NaN)",
            )


class BatchMessage(Packet):
    """server -> worker process: for each of its W workers (slots) X_d and X_g (W x 2 x b x C x H x W,
    rows TRAINING and FEEDBACK), then their class labels (W x 2 x b) for
    conditional models."""

    def __init__(
        self,
        slots: int,
        batch: int,
        image_shape: tuple[int, int, int],
        num_classes: int | None,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        """num_classes: None when unconditional (validation.validate_wire_labels checked that the
        labels are exact in the wire dtype)."""
        image_values = slots * 2 * batch * math.prod(image_shape)
        super().__init__(image_values + (slots * 2 * batch if num_classes is not None else 0), dtype, device)
        self.images = self.payload[:image_values].view(slots, 2, batch, *image_shape)
        self.labels = self.payload[image_values:].view(slots, 2, batch) if num_classes is not None else None

    def put(self, slot: int, row: int, images: torch.Tensor, labels: torch.Tensor | None) -> None:
        self.images[slot, row].copy_(images)
        if self.labels is not None:
            assert labels is not None, "a conditional model's batches travel with their labels"
            self.labels[slot, row].copy_(labels)


class FeedbackMessage(Packet):
    """worker process -> server: each of its W workers' statistics (W x WORKER_STATISTICS, float64),
    their error feedback F_n (W x b x C x H x W), then, when mdgan.aggregate asks for them, each
    worker's verdicts on its samples (W x b: its D's real/fake logits)."""

    def __init__(
        self,
        slots: int,
        batch: int,
        image_shape: tuple[int, int, int],
        dtype: torch.dtype,
        device: torch.device,
        verdicts: bool = False,
    ) -> None:
        feedback_values = slots * batch * math.prod(image_shape)
        statistics = slots * len(WORKER_STATISTICS)
        super().__init__(feedback_values + (slots * batch if verdicts else 0), dtype, device, statistics)
        self.worker_statistics = self.statistics.view(slots, len(WORKER_STATISTICS))
        self.feedback = self.payload[:feedback_values].view(slots, batch, *image_shape)
        self.verdicts = self.payload[feedback_values:].view(slots, batch) if verdicts else None

    def report(self, **per_worker: list[float]) -> None:
        """Worker side: one list per name of WORKER_STATISTICS, a value per worker."""
        assert per_worker.keys() == set(WORKER_STATISTICS), f"report {WORKER_STATISTICS}"
        values = [per_worker[name] for name in WORKER_STATISTICS]
        self.worker_statistics.copy_(torch.tensor(values, dtype=torch.float64).T)

    def reported(self) -> dict[str, list[float]]:
        """Server side: each statistic of WORKER_STATISTICS, a value per worker of the process in
        slot order."""
        return dict(zip(WORKER_STATISTICS, self.worker_statistics.T.tolist(), strict=True))
