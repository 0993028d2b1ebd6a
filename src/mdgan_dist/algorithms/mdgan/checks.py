"""MD-GAN's own configuration checks: k, the speed options, the fault injection, the wire labels."""

from __future__ import annotations

from mdgan_dist.algorithms.checks import require_workers
from mdgan_dist.config import (
    Config,
    checkpoint_error_point,
    kill_schedule,
    nan_point,
    require,
    resolved_k,
    slow_point,
    validate_wire_labels,
)
from mdgan_dist.errors import ConfigError
from mdgan_dist.job import DataPlan


def num_workers(cfg: Config, world_size: int) -> int:
    """N: mdgan.workers_per_rank on each process but the server."""
    return (world_size - 1) * cfg.mdgan.workers_per_rank


def validate(cfg: Config, world_size: int) -> None:
    require_workers(cfg, world_size)
    validate_workers_per_rank(cfg)
    workers = num_workers(cfg, world_size)
    k = resolved_k(cfg.mdgan, workers)
    if not 1 <= k <= workers:
        raise ConfigError(
            f"mdgan.k={k} is outside 1..N with N={workers} workers: "
            f"set mdgan.k between 1 and {workers}, or leave it unset for ceil(log2 N)"
        )
    validate_speed_options(cfg, workers)
    # The fault injection names worker processes.
    kill_schedule(cfg.fault, world_size - 1)
    slow_point(cfg.fault, world_size - 1)
    nan_point(cfg.fault, world_size - 1)
    checkpoint_error_point(cfg.fault, world_size - 1)


def validate_workers_per_rank(cfg: Config) -> None:
    per_rank = cfg.mdgan.workers_per_rank
    require(per_rank >= 1, f"mdgan.workers_per_rank={per_rank}: must be >= 1")
    if per_rank == 1:
        return
    require(
        cfg.mdgan.quorum is None,
        "mdgan.quorum cannot be combined with mdgan.workers_per_rank > 1: a process answers for all its "
        "workers at once, so a late one would hold back W feedbacks; use one of them",
    )
    require(
        not cfg.train.compile,
        "train.compile cannot be combined with mdgan.workers_per_rank > 1: the stacked discriminators run "
        "through torch.func.vmap, which the compiled module does not support here; use one of them",
    )


def validate_speed_options(cfg: Config, num_workers: int) -> None:
    """mdgan.overlap and mdgan.quorum, and the combinations not supported."""
    quorum, tolerant = cfg.mdgan.quorum, cfg.fault.tolerate_worker_loss
    if quorum is not None:
        require(
            1 <= quorum <= num_workers,
            f"mdgan.quorum={quorum} is outside 1..N with N={num_workers} workers: "
            "set it between 1 and N, or leave it unset to wait for every worker",
        )
    partial = quorum is not None and quorum < num_workers
    require(
        not (partial and (cfg.mdgan.overlap or tolerant)),
        "mdgan.quorum below N cannot be combined with mdgan.overlap or fault.tolerate_worker_loss: choose one",
    )
    require(
        not (cfg.mdgan.overlap and tolerant),
        "mdgan.overlap cannot be combined with fault.tolerate_worker_loss: choose one",
    )


def check_plan(cfg: Config, plan: DataPlan) -> None:
    """The class labels travel with the generated batches, in comm.dtype."""
    validate_wire_labels(cfg, plan.num_classes)
