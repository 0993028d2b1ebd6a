"""What every rank derives, identically and without talking, before the process group exists.

Checking the data here means a bad dataset, model or batch size fails on every rank with the same
message before any process waits on a peer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mdgan_dist.config import Config
from mdgan_dist.data import ImageDataset, open_dataset, split_indices
from mdgan_dist.models import check_image_shape
from mdgan_dist.seeding import derive_seed
from mdgan_dist.validation import validate_shards


@dataclass
class DataPlan:
    train: ImageDataset  # lazy: a worker reads only the samples of its own shard
    shards: list[torch.Tensor]  # indices into train, one tensor per worker
    classes: int  # what a conditional model is conditioned on: the dataset's classes, or data.clusters
    class_weights: torch.Tensor | None = None  # how often G draws each class: None, uniformly; the clusters' sizes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.train.image_shape

    @property
    def num_classes(self) -> int:
        return self.classes

    @property
    def shard_sizes(self) -> list[int]:
        return [len(shard) for shard in self.shards]


def plan_data(cfg: Config, num_workers: int) -> DataPlan:
    train = open_dataset(cfg.data, "train")
    check_image_shape(cfg.model, train.image_shape)
    if num_workers == 0:  # one process trains on the whole train split, whatever data.split says
        shards = [torch.arange(len(train.labels))]
    else:
        # Every worker draws batches of b real samples from its shard.
        seed = derive_seed(cfg.train.seed, "split")
        shards = split_indices(train.labels, num_workers, cfg.data, seed, min_size=cfg.train.batch_size)
    plan = DataPlan(train, shards, cfg.data.clusters or train.num_classes)
    validate_shards(cfg, plan.shard_sizes)
    return plan
