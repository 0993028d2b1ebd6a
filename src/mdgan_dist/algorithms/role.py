"""What every role of every algorithm is given, and what it must do: run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from mdgan_dist.config import Config
from mdgan_dist.data import load_shard
from mdgan_dist.distributed.transport import Transport
from mdgan_dist.fault_plan import FaultPlan
from mdgan_dist.job import DataPlan


@dataclass
class RoleContext:
    """The config, the fault plan parsed from its fault.*, the data plan, the run directory every
    rank agreed on, this rank's device and, for an algorithm that runs on several processes, the
    transport to its peers."""

    cfg: Config
    faults: FaultPlan
    plan: DataPlan
    run_dir: Path
    device: torch.device
    peers: Transport | None = None  # None: a single-process algorithm

    @property
    def transport(self) -> Transport:
        if self.peers is None:
            raise RuntimeError("this role runs in one process: it has no peers to talk to")
        return self.peers

    @property
    def rank(self) -> int:
        return 0 if self.peers is None else self.peers.rank

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.plan.image_shape

    @property
    def num_classes(self) -> int:
        return self.plan.num_classes

    @property
    def num_workers(self) -> int:
        return len(self.plan.shards)

    def shard(self, worker: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels of worker `worker` (0-based), read from the dataset."""
        return load_shard(self.plan.train, self.plan.shards[worker])


class Role(Protocol):
    """A worker, built from its RoleContext; or the training loop around a server (loop.py)."""

    def run(self) -> None: ...
