"""FL-GAN's configuration checks."""

from __future__ import annotations

from mdgan_dist.algorithms.checks import reject_mdgan_options, require_workers
from mdgan_dist.config import Config


def validate(cfg: Config, world_size: int) -> None:
    require_workers(cfg, world_size)
    reject_mdgan_options(cfg)
