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
        if state["size"] != len(self.images):
            raise ValueError(
                f"the saved sampler state is for a shard of {state['size']} samples, this shard has "
                f"{len(self.images)}: resume with the same data, split and number of workers"
            )
        self._generator.set_state(state["generator"])
        self._completed = state["epoch"]
        self._start_epoch(position=state["position"])
