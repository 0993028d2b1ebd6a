"""The checks of a configuration that every algorithm shares, each raising a ConfigError that says
what to do: its fields without data or peers, the shards against the batch size, and the class
labels on the wire against comm.dtype."""

from __future__ import annotations

from mdgan_dist.augment import parse_policy
from mdgan_dist.config import Config, WireDtype
from mdgan_dist.errors import ConfigError

# The largest integer each wire dtype holds exactly (2^(mantissa bits + 1)): ACGAN's class labels
# travel with the batches as floats.
EXACT_INTEGERS = {WireDtype.float32: 2**24, WireDtype.bfloat16: 2**8, WireDtype.float16: 2**11}


def validate_fields(cfg: Config) -> None:
    """Checks the values every algorithm reads, without data or peers; raises ConfigError saying
    what to do. Each algorithm checks its own (algorithms/registry.py: validate)."""
    require(cfg.eval.every >= 0, f"eval.every={cfg.eval.every}: must be >= 0 (0 disables scoring)")
    require(cfg.eval.num_samples >= 2, f"eval.num_samples={cfg.eval.num_samples}: need at least 2 samples")
    require(
        cfg.data.classes_per_worker >= 1,
        f"data.classes_per_worker={cfg.data.classes_per_worker}: each worker must hold at least one class",
    )
    require(cfg.gan.disc_steps >= 1, f"gan.disc_steps={cfg.gan.disc_steps}: must be >= 1")
    require(
        cfg.gan.ema_halflife >= 0,
        f"gan.ema_halflife={cfg.gan.ema_halflife}: must be >= 0 iterations (0 turns the average of G off)",
    )
    try:
        parse_policy(cfg.gan.augment)
    except ValueError as error:
        raise ConfigError(f"gan.augment={cfg.gan.augment!r}: {error}, comma-separated, or none") from error
    require(0 < cfg.gan.real_label <= 1, f"gan.real_label={cfg.gan.real_label}: must be in (0, 1]")
    require(cfg.gan.r1 >= 0, f"gan.r1={cfg.gan.r1}: the R1 penalty's gamma must be >= 0 (0 turns it off)")
    require(
        cfg.train.threads is None or cfg.train.threads >= 1,
        f"train.threads={cfg.train.threads}: must be >= 1, or null for the node's cores shared among its ranks",
    )
    clusters = cfg.data.clusters
    require(clusters == 0 or clusters >= 2, f"data.clusters={clusters}: 0 (the dataset's labels) or at least 2")
    require(
        not clusters or cfg.model.conditional,
        f"data.clusters={clusters} labels the images for a conditional model: set model.conditional=true, "
        "or data.clusters=0",
    )
    require(cfg.data.alpha > 0, f"data.alpha={cfg.data.alpha}: the Dirichlet concentration must be > 0")
    require(cfg.train.iterations >= 1, f"train.iterations={cfg.train.iterations}: must be >= 1")
    require(cfg.train.batch_size >= 1, f"train.batch_size={cfg.train.batch_size}: must be >= 1")
    require(cfg.model.z_dim >= 1, f"model.z_dim={cfg.model.z_dim}: must be >= 1")
    require(cfg.model.width > 0, f"model.width={cfg.model.width}: must be > 0")
    require(cfg.comm.timeout_s > 0, f"comm.timeout_s={cfg.comm.timeout_s}: must be > 0 seconds")
    require(cfg.log.every >= 1, f"log.every={cfg.log.every}: must be >= 1")
    require(cfg.log.sample_every >= 1, f"log.sample_every={cfg.log.sample_every}: must be >= 1")
    require(cfg.checkpoint.every >= 0, f"checkpoint.every={cfg.checkpoint.every}: must be >= 0 (0 disables)")
    require(
        cfg.checkpoint.keep >= 2,
        f"checkpoint.keep={cfg.checkpoint.keep}: keep at least 2, so a torn newest one has a fallback",
    )
    for name in ("g_lr", "d_lr", "g_eps", "d_eps"):
        value = getattr(cfg.optim, name)
        require(value > 0, f"optim.{name}={value}: must be > 0")
    for name in ("beta1", "beta2"):
        value = getattr(cfg.optim, name)
        require(0 <= value < 1, f"optim.{name}={value}: must be in [0, 1)")


def validate_shards(cfg: Config, shard_sizes: list[int]) -> None:
    """A worker draws batches of b real samples from its shard: every shard must hold b of them;
    data.clusters needs an image per cluster at least."""
    total = sum(shard_sizes)
    require(
        cfg.data.clusters <= total,
        f"data.clusters={cfg.data.clusters}: more clusters than the {total} training images; use fewer",
    )
    smallest = min(shard_sizes)
    if cfg.train.batch_size > smallest:
        worker = shard_sizes.index(smallest)
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is larger than the shard of worker {worker} "
            f"({smallest} samples; shard sizes {shard_sizes}): lower train.batch_size, use fewer "
            "workers, or a larger alpha with data.split=dirichlet"
        )


def validate_wire_labels(cfg: Config, num_classes: int) -> None:
    """Labels that travel with the generated batches (MD-GAN) must be exact in comm.dtype."""
    exact = EXACT_INTEGERS[cfg.comm.dtype]
    require(
        not (cfg.model.conditional and num_classes > exact),
        f"comm.dtype={cfg.comm.dtype} holds class labels exactly only up to {exact}, the dataset has "
        f"{num_classes} classes: use comm.dtype=float32 with model.conditional=true",
    )


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def require_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    require(value in choices, f"{name}={value!r} is not one of {', '.join(choices)}")
