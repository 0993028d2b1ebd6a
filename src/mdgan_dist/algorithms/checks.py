"""Checks that several algorithms' validations share: how many processes they run on, and the
MD-GAN options that mean nothing to the others."""

from __future__ import annotations

from mdgan_dist.config import Config
from mdgan_dist.errors import ConfigError


def require_one_process(cfg: Config, world_size: int) -> None:
    if world_size != 1:
        raise ConfigError(
            f"algorithm={cfg.algorithm} runs in one process, got WORLD_SIZE={world_size}: "
            f"launch it with `python -m mdgan_dist.train algorithm={cfg.algorithm}` (or torchrun --nproc_per_node=1)"
        )


def require_workers(cfg: Config, world_size: int) -> None:
    if world_size < 2:
        raise ConfigError(
            f"algorithm={cfg.algorithm} needs at least 2 processes (1 server + 1 worker), got WORLD_SIZE={world_size}: "
            "launch with `torchrun --nproc_per_node=N+1 -m mdgan_dist.train` and N >= 1, "
            "or use algorithm=standalone for one process"
        )


def reject_mdgan_options(cfg: Config) -> None:
    """For every algorithm but MD-GAN: its speed options would be silently ignored."""
    if cfg.mdgan.overlap or cfg.mdgan.quorum is not None:
        raise ConfigError(f"mdgan.overlap and mdgan.quorum are MD-GAN's, not {cfg.algorithm}'s: remove them")
    if cfg.mdgan.aggregate != "mean":
        raise ConfigError(
            f"mdgan.aggregate={cfg.mdgan.aggregate} is MD-GAN's: {cfg.algorithm}'s G learns from one discriminator "
            "at a time, so there is no feedback to aggregate; remove it"
        )
    if cfg.mdgan.workers_per_rank != 1:
        raise ConfigError(
            f"mdgan.workers_per_rank is MD-GAN's: {cfg.algorithm} runs one worker per process "
            "(FL-GAN's workers each train a whole G and D, which the stacked discriminators do not cover)"
        )


def reject_worker_faults(cfg: Config) -> None:
    """For the one-process algorithm: there is no worker to lose, to kill or to slow down."""
    if cfg.fault.tolerate_worker_loss or cfg.fault.kill_worker or cfg.fault.slow_worker:
        raise ConfigError(
            "fault.tolerate_worker_loss, fault.kill_worker and fault.slow_worker act on workers, and "
            f"algorithm={cfg.algorithm} has none: remove them from the command line"
        )
