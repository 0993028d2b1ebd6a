"""MD-GAN's own configuration checks: k, the swaps, the aggregation rule, the speed options, the
wire labels, privacy."""

from __future__ import annotations

import torch

from mdgan_dist.algorithms.aggregation import AGGREGATIONS
from mdgan_dist.algorithms.checks import require_workers
from mdgan_dist.algorithms.mdgan.class_sets import present
from mdgan_dist.algorithms.mdgan.schedule import feedback_batch
from mdgan_dist.config import Aggregate, Config, resolved_k
from mdgan_dist.errors import ConfigError
from mdgan_dist.job import DataPlan
from mdgan_dist.models.registry import batch_dependent
from mdgan_dist.privacy import check_budget, private, validate_privacy
from mdgan_dist.validation import require, validate_wire_labels


def num_workers(cfg: Config, world_size: int) -> int:
    """N: mdgan.workers_per_rank on each process but the server."""
    return (world_size - 1) * cfg.mdgan.workers_per_rank


def validate(cfg: Config, world_size: int) -> None:
    require_workers(cfg, world_size)
    validate_workers_per_rank(cfg)
    require(
        cfg.mdgan.swap_every_epochs >= 0,
        f"mdgan.swap_every_epochs={cfg.mdgan.swap_every_epochs}: must be >= 0 (0 disables swaps)",
    )
    workers = num_workers(cfg, world_size)
    k = resolved_k(cfg.mdgan, workers)
    if not 1 <= k <= workers:
        raise ConfigError(
            f"mdgan.k={k} is outside 1..N with N={workers} workers: "
            f"set mdgan.k between 1 and {workers}, or leave it unset for ceil(log2 N)"
        )
    validate_aggregation(cfg, workers, k)
    validate_speed_options(cfg, workers)
    validate_privacy(cfg)
    require(
        not (private(cfg) and batch_dependent(cfg.model)),
        f"privacy cannot be combined with model={cfg.model.name}: its D compares each sample with the rest of "
        "its batch (minibatch discrimination), and DP-SGD judges each record alone, where that feature is 0 for "
        "real records and not for generated batches; use model=dcgan or model=mnist_mlp",
    )


def validate_aggregation(cfg: Config, workers: int, k: int) -> None:
    """mdgan.aggregate: the labels and the judges per sample its rule needs."""
    name = cfg.mdgan.aggregate
    rule = AGGREGATIONS[name]
    require(
        not rule.labels or cfg.model.conditional,
        f"mdgan.aggregate={name} needs the classes the samples were generated for, and the model is "
        "unconditional: set model.conditional=true, or use "
        + " or ".join(other for other, entry in AGGREGATIONS.items() if not entry.labels),
    )
    require(
        not (rule.class_sets and cfg.data.clusters),
        f"mdgan.aggregate={name} checks before training that every class has a judge in every batch, and with "
        "data.clusters the classes are known only once the workers agreed on them: use another rule, or data.clusters=0",
    )
    trim = cfg.mdgan.trim
    require(
        trim == 1 or name == Aggregate.trimmed_mean,
        f"mdgan.trim={trim} applies to mdgan.aggregate=trimmed_mean only, not {name}: remove it",
    )
    require(trim >= 1, f"mdgan.trim={trim}: trimmed_mean drops at least 1 value at each end")
    needed = 2 * trim + 1 if name == Aggregate.trimmed_mean else rule.min_judges
    require_judges(workers, k, needed, f"mdgan.aggregate={name} compares the judges of each generated sample")
    outliers = cfg.mdgan.outlier_iterations
    require(outliers >= 0, f"mdgan.outlier_iterations={outliers}: must be >= 0 (0: never name a worker)")
    if outliers:
        require_judges(workers, k, 3, "mdgan.outlier_iterations compares each judge with the median of a sample's")


def require_judges(workers: int, k: int, needed: int, why: str) -> None:
    """Worker n judges batch n mod k: a sample has at least N // k judges."""
    judges = workers // k
    fix = f"set mdgan.k to at most {workers // needed}" if workers >= needed else f"use at least {needed} workers"
    require(
        judges >= needed,
        f"{why} and needs {needed} judges per sample, but with N={workers} workers and mdgan.k={k} a sample has "
        f"{judges}: {fix}",
    )


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
    """The class labels travel with the generated batches, in comm.dtype; privacy.* must fit the
    shards; class_aware needs a judge that holds each class among the judges of every generated batch."""
    validate_wire_labels(cfg, plan.num_classes)
    check_budget(cfg, plan.shard_sizes)
    if AGGREGATIONS[cfg.mdgan.aggregate].class_sets:
        require_judges_of_every_class(cfg, plan)


def require_judges_of_every_class(cfg: Config, plan: DataPlan) -> None:
    workers = len(plan.shards)
    k = resolved_k(cfg.mdgan, workers)
    for batch in range(k):
        judges = [n for n in range(workers) if feedback_batch(n, k) == batch]
        held = torch.stack([present(plan.train.labels[plan.shards[n]], plan.num_classes) for n in judges]).sum(0)
        missing = [c for c in range(plan.num_classes) if not held[c]]
        if missing:
            raise ConfigError(
                f"mdgan.aggregate={cfg.mdgan.aggregate}: generated batch {batch} is judged by workers "
                f"{', '.join(map(str, judges))} (0-based), whose shards hold no sample of class "
                f"{', '.join(map(str, missing))}, so those samples would have no judge that saw their class: "
                "set mdgan.k=1 (every worker judges every sample), or use a split where each batch's judges "
                "hold every class"
            )
