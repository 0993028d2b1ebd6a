"""FL-GAN's configuration checks."""

from __future__ import annotations

from mdgan_dist.algorithms.checks import reject_mdgan_options, require_workers
from mdgan_dist.config import Config, checkpoint_error_point, kill_schedule, nan_point, slow_point


def validate(cfg: Config, world_size: int) -> None:
    require_workers(cfg, world_size)
    reject_mdgan_options(cfg)
    # The fault injection names worker processes (and the server: 0, for a checkpoint error).
    kill_schedule(cfg.fault, world_size - 1)
    slow_point(cfg.fault, world_size - 1)
    nan_point(cfg.fault, world_size - 1)
    checkpoint_error_point(cfg.fault, world_size - 1)
