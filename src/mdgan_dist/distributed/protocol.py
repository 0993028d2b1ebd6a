"""The wire protocol's header: a small int64 tensor in front of every message.

Layout: [kind, iteration, arg0, arg1, payload_numel, value0, value1, 0]. value0 and value1 carry
float64 statistics (a worker's losses) bit-cast into int64 so that one header tensor suffices.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import torch

HEADER_LEN = 8


class Kind(IntEnum):
    HELLO = 1  # server -> worker: digest, start iteration, shapes, then the verdict; worker -> server: shard size
    TRAIN = 2  # server -> worker: one packed tensor (X_d, X_g) follows
    FEEDBACK = 3  # worker -> server: the error feedback F_n follows; values: d_loss, g_loss
    SWAP = 4  # server -> worker: arg0 = rank to send D to, arg1 = rank to receive D from
    DISCRIMINATOR = 5  # worker -> worker: arg0 = which D (the worker it was born on); its flat state follows
    STOP = 6  # server -> worker: training is over
    ABORT = 7  # either way: the start-up handshake failed; arg0 = the worker rank that disagreed
    CHECKPOINT = 8  # server -> worker: write your state for this iteration; worker -> server: written
    SYNC = 9  # FL-GAN: server -> worker: send G and D; worker -> server: its G and D follow; server -> worker: the average follows


@dataclass(frozen=True)
class Header:
    kind: Kind
    iteration: int = 0
    arg0: int = 0
    arg1: int = 0
    numel: int = 0
    value0: float = 0.0
    value1: float = 0.0

    def encode(self, out: torch.Tensor) -> torch.Tensor:
        """Writes the header into a preallocated int64 tensor of HEADER_LEN and returns it."""
        ints = torch.tensor([int(self.kind), self.iteration, self.arg0, self.arg1, self.numel])
        values = torch.tensor([self.value0, self.value1, 0.0], dtype=torch.float64)
        out[:5].copy_(ints)
        out[5:].copy_(values.view(torch.int64))
        return out

    @classmethod
    def decode(cls, tensor: torch.Tensor) -> "Header":
        ints = tensor.cpu()
        values = ints[5:7].clone().view(torch.float64)
        return cls(
            kind=Kind(int(ints[0])),
            iteration=int(ints[1]),
            arg0=int(ints[2]),
            arg1=int(ints[3]),
            numel=int(ints[4]),
            value0=float(values[0]),
            value1=float(values[1]),
        )


def header_buffer(device: torch.device) -> torch.Tensor:
    return torch.zeros(HEADER_LEN, dtype=torch.int64, device=device)
