"""Endless, resumable stream of real batches from a worker's shard."""

from __future__ import annotations

from typing import Any

import torch


class ShardSampler:
    """Batches of exactly `batch_size` samples over seeded per-epoch permutations of a shard.

    A batch may straddle two epochs, so no sample is dropped or repeated within an epoch and every
    batch has the same size. `epoch` counts fractional epochs, which is what swap schedules use.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if not 1 <= batch_size <= len(images):
            raise ValueError(f"batch_size={batch_size} must be between 1 and the shard size {len(images)}")
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self._generator = torch.Generator().manual_seed(seed)
        self._completed = 0
        self._start_epoch(position=0)

    def _start_epoch(self, position: int) -> None:
        # The state before drawing is what a resume needs to redraw this epoch's permutation.
        self._epoch_state = self._generator.get_state()
        self._order = torch.randperm(len(self.images), generator=self._generator)
        self._position = position

    @property
    def epoch(self) -> float:
        """Completed epochs plus the fraction of the current one already served."""
        return self._completed + self._position / len(self.images)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next `batch_size` images and labels."""
        taken = []
        needed = self.batch_size
        while needed:
            chunk = self._order[self._position : self._position + needed]
            taken.append(chunk)
            needed -= len(chunk)
            self._position += len(chunk)
            if self._position == len(self.images):
                self._completed += 1
                self._start_epoch(position=0)
        index = torch.cat(taken).to(self.images.device)
        return self.images[index], self.labels[index]

    def state_dict(self) -> dict[str, Any]:
        """Completed epochs, position in the current one, and the generator as that epoch began."""
        return {
            "epoch": self._completed,
            "position": self._position,
            "generator": self._epoch_state.clone(),
            "size": len(self.images),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _require_size(state["size"], len(self.images))
        self._generator.set_state(state["generator"])
        self._completed = state["epoch"]
        self._start_epoch(position=state["position"])


class PoissonSampler:
    """Batches in which each sample of the shard is included independently with probability
    `rate`, so their size varies around rate x shard size: DP-SGD's sampling, the one its privacy
    accounting assumes (privacy.py). The generator is the sampler's own; its state is resumed."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, rate: float, generator: torch.Generator) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if not 0 < rate <= 1:
            raise ValueError(f"sampling rate {rate} must be in (0, 1]")
        self.images, self.labels, self.rate = images, labels, rate
        self._generator = generator

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples drawn this time, in shard order; possibly none."""
        index = (torch.rand(len(self.images), generator=self._generator) < self.rate).nonzero().flatten()
        index = index.to(self.images.device)
        return self.images[index], self.labels[index]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state(), "size": len(self.images)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _require_size(state["size"], len(self.images))
        self._generator.set_state(state["generator"])


Sampler = ShardSampler | PoissonSampler


def _require_size(saved: int, size: int) -> None:
    if saved != size:
        raise ValueError(
            f"the saved sampler state is for a shard of {saved} samples, this shard has {size}: "
            "resume with the same data, split and number of workers"
        )
