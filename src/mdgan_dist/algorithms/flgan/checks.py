"""FL-GAN's configuration checks."""

from __future__ import annotations

from mdgan_dist.algorithms.checks import require_workers
from mdgan_dist.config import Config
from mdgan_dist.validation import require


def validate(cfg: Config, world_size: int) -> None:
    require_workers(cfg, world_size)
    require(
        cfg.flgan.sync_every_epochs > 0,
        f"flgan.sync_every_epochs={cfg.flgan.sync_every_epochs}: must be > 0 (FL-GAN averages G and D every E epochs)",
    )
