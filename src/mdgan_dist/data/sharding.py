"""How the train part is divided among the workers, and how a worker reads its shard."""

from __future__ import annotations

import numpy as np
import torch

from mdgan_dist.config import SPLITS, DataConfig
from mdgan_dist.data.base import ImageDataset
from mdgan_dist.errors import ConfigError


def split_indices(labels: torch.Tensor, num_workers: int, cfg: DataConfig, seed: int) -> list[torch.Tensor]:
    """Disjoint, ascending int64 index shards covering `labels`, one per worker.

    Depends only on its arguments, so every process computes the same shards without communicating.
    `iid`: a seeded permutation cut into near-equal parts. `dirichlet`: each class is divided among
    the workers in proportions drawn from Dirichlet(alpha), the usual non-iid label skew.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers={num_workers}: need at least one worker")
    if cfg.split == "iid":
        generator = torch.Generator().manual_seed(seed)
        shards = torch.randperm(len(labels), generator=generator).tensor_split(num_workers)
    elif cfg.split == "dirichlet":
        shards = _dirichlet_shards(labels, num_workers, cfg.alpha, seed)
    else:
        raise ConfigError(f"data.split={cfg.split!r} is not one of {', '.join(SPLITS)}")
    return [shard.sort().values for shard in shards]


def _dirichlet_shards(labels: torch.Tensor, num_workers: int, alpha: float, seed: int) -> list[torch.Tensor]:
    if alpha <= 0:
        raise ConfigError(f"data.alpha={alpha}: the Dirichlet concentration must be > 0")
    rng = np.random.default_rng(seed)  # numpy, as torch's Dirichlet sampler takes no generator
    pieces = [[torch.empty(0, dtype=torch.int64)] for _ in range(num_workers)]
    for label in labels.unique().tolist():  # ascending, so the draws happen in a fixed order
        members = (labels == label).nonzero().flatten()
        members = members[torch.from_numpy(rng.permutation(len(members)))]
        proportions = rng.dirichlet(np.full(num_workers, alpha))
        cuts = np.round(np.cumsum(proportions)[:-1] * len(members)).astype(np.int64)
        for worker, piece in enumerate(members.tensor_split(cuts.tolist())):
            pieces[worker].append(piece)
    return [torch.cat(parts) for parts in pieces]


def load_shard(dataset: ImageDataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (float32, N x C x H x W) and labels (int64) at `indices`, reading nothing else."""
    items = [dataset[i] for i in indices.tolist()]
    if not items:
        return torch.empty((0, *dataset.image_shape)), torch.empty(0, dtype=torch.int64)
    images, labels = zip(*items)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)
