"""FL-GAN's configuration checks."""

from __future__ import annotations

from mdgan_dist.algorithms.checks import reject_mdgan_options, require_workers
from mdgan_dist.config import Config, kill_schedule


def validate(cfg: Config, world_size: int) -> None:
    require_workers(cfg, world_size)
    reject_mdgan_options(cfg)
    kill_schedule(cfg.fault, world_size - 1)  # fault.kill_worker names worker processes
