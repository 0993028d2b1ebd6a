"""Model (and optimizer) state as one flat float32 buffer: one message per transfer."""

from __future__ import annotations

import torch


def flatten(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """The tensors, in their order, as one contiguous float32 vector on `device`."""
    return torch.cat([tensor.detach().reshape(-1).to(device, torch.float32) for tensor in tensors])


def unflatten_into(tensors: list[torch.Tensor], flat: torch.Tensor) -> None:
    """Copies consecutive slices of `flat` back into the tensors, in place and in order."""
    offset = 0
    with torch.no_grad():
        for tensor in tensors:
            count = tensor.numel()
            tensor.copy_(flat[offset : offset + count].view_as(tensor))
            offset += count
