"""How the train part is divided among the workers, and how a worker reads its shard."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mdgan_dist.config import DataConfig, DataSplit
from mdgan_dist.data.base import ImageDataset
from mdgan_dist.errors import ConfigError

# How often a Dirichlet split is drawn again when a shard comes out smaller than asked.
DIRICHLET_DRAWS = 1000


def split_indices(
    labels: torch.Tensor, num_workers: int, cfg: DataConfig, seed: int, min_size: int = 0
) -> list[torch.Tensor]:
    """Disjoint, ascending int64 index shards covering `labels`, one per worker.

    Depends only on its arguments, so every process computes the same shards without communicating.
    `iid`: a seeded permutation cut into near-equal parts. `dirichlet`: each class is divided among
    the workers in proportions drawn from Dirichlet(alpha), the usual non-iid label skew, drawn
    again (from the same seeded stream) while a shard holds fewer than `min_size` samples, as
    federated-learning benchmarks do: a small alpha over many workers often leaves one empty. `classes`:
    each worker holds only `classes_per_worker` classes, and each class is cut evenly among the
    workers that hold it.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers={num_workers}: need at least one worker")
    shards: Sequence[torch.Tensor]
    if cfg.split == DataSplit.iid:
        generator = torch.Generator().manual_seed(seed)
        shards = torch.randperm(len(labels), generator=generator).tensor_split(num_workers)
    elif cfg.split == DataSplit.dirichlet:
        shards = _dirichlet_shards(labels, num_workers, cfg.alpha, seed, min_size)
    else:  # classes
        shards = _class_shards(labels, num_workers, cfg.classes_per_worker, seed)
    return [shard.sort().values for shard in shards]


def _dirichlet_shards(
    labels: torch.Tensor, num_workers: int, alpha: float, seed: int, min_size: int
) -> list[torch.Tensor]:
    """The first draw whose shards all hold min_size samples; the last draw if none does (the
    caller's size check then names the small shard)."""
    if alpha <= 0:
        raise ConfigError(f"data.alpha={alpha}: the Dirichlet concentration must be > 0")
    rng = np.random.default_rng(seed)  # numpy, as torch's Dirichlet sampler takes no generator
    for _ in range(DIRICHLET_DRAWS):
        shards = _dirichlet_draw(labels, num_workers, alpha, rng)
        if min(len(shard) for shard in shards) >= min_size:
            break
    return shards


def _dirichlet_draw(
    labels: torch.Tensor, num_workers: int, alpha: float, rng: np.random.Generator
) -> list[torch.Tensor]:
    pieces = [[torch.empty(0, dtype=torch.int64)] for _ in range(num_workers)]
    for label in labels.unique().tolist():  # ascending, so the draws happen in a fixed order
        members = (labels == label).nonzero().flatten()
        members = members[torch.from_numpy(rng.permutation(len(members)))]
        proportions = rng.dirichlet(np.full(num_workers, alpha))
        cuts = np.round(np.cumsum(proportions)[:-1] * len(members)).astype(np.int64)
        for worker, piece in enumerate(members.tensor_split(cuts.tolist())):
            pieces[worker].append(piece)
    return [torch.cat(parts) for parts in pieces]


def _class_shards(labels: torch.Tensor, num_workers: int, per_worker: int, seed: int) -> list[torch.Tensor]:
    classes = labels.unique()
    if per_worker > len(classes):
        raise ConfigError(
            f"data.classes_per_worker={per_worker} but the dataset has {len(classes)} classes: "
            f"set data.classes_per_worker between 1 and {len(classes)}"
        )
    if num_workers * per_worker < len(classes):
        raise ConfigError(
            f"data.split=classes with {num_workers} workers x data.classes_per_worker={per_worker} covers only "
            f"{num_workers * per_worker} of {len(classes)} classes: set data.classes_per_worker >= "
            f"{-(-len(classes) // num_workers)} so that no class is left out"
        )
    generator = torch.Generator().manual_seed(seed)
    # Slots dealt in a seeded class order, c consecutive ones per worker: every class is held by
    # ceil or floor of N*c/C workers and no worker holds a class twice.
    order = classes[torch.randperm(len(classes), generator=generator)]
    holders: dict[int, list[int]] = {int(label): [] for label in classes}
    for slot in range(num_workers * per_worker):
        holders[int(order[slot % len(classes)])].append(slot // per_worker)
    pieces = [[torch.empty(0, dtype=torch.int64)] for _ in range(num_workers)]
    for label, workers in holders.items():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        for worker, piece in zip(workers, members.tensor_split(len(workers)), strict=True):
            pieces[worker].append(piece)
    return [torch.cat(parts) for parts in pieces]


def load_shard(dataset: ImageDataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (float32, N x C x H x W) and labels (int64) at `indices`, reading nothing else."""
    items = [dataset[i] for i in indices.tolist()]
    if not items:
        return torch.empty((0, *dataset.image_shape)), torch.empty(0, dtype=torch.int64)
    images, labels = zip(*items, strict=True)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)
