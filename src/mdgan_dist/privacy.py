"""Differentially private discriminators (privacy.*): the accounting, its checks, the secret streams.

A worker's D steps by DP-SGD (Abadi et al. 2016; algorithms/mdgan/private.py): each step's real
batch is a Poisson sample of the worker's shard at rate q = b / |shard|, each record's gradient of
D's loss is clipped to norm C, and Gaussian noise of std sigma x C is added to their sum. One step
is the sampled Gaussian mechanism with noise multiplier sigma, for neighbouring shards that differ
by one record added or removed. A record of shard n enters worker n's steps only, whichever D the
worker holds, so its privacy loss is that of T x L such steps composed, which dp-accounting's RDP
accountant bounds (Mironov, Talwar, Zhang 2019). The smallest shard has the highest rate and the
worst epsilon: the run's. docs/design.md, "Privacy", says what this covers and what it does not.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import dp_accounting
import torch
from dp_accounting import mechanism_calibration
from dp_accounting.rdp import RdpAccountant

from mdgan_dist.config import Aggregate, Config
from mdgan_dist.errors import ConfigError
from mdgan_dist.seeding import generator
from mdgan_dist.validation import require

log = logging.getLogger(__name__)


def private(cfg: Config) -> bool:
    return cfg.privacy.epsilon is not None


def d_steps(cfg: Config, iterations: int) -> int:
    """A worker's D steps in `iterations` iterations: gan.disc_steps each."""
    return iterations * cfg.gan.disc_steps


def sampling_rate(cfg: Config, shard_size: int) -> float:
    """q: the expected real batch is train.batch_size records."""
    return cfg.train.batch_size / shard_size


def record_epsilon(rate: float, noise_multiplier: float, steps: int, delta: float) -> float:
    """The epsilon of (epsilon, delta)-DP for one record after `steps` sampled Gaussian steps."""
    if steps == 0:
        return 0.0
    accountant = RdpAccountant()
    with _quiet_accountant():
        accountant.compose(_steps(rate, noise_multiplier, steps))
        return float(accountant.get_epsilon(delta))


def calibrated_noise(rate: float, steps: int, epsilon: float, delta: float) -> float:
    """The smallest noise multiplier (to the search's tolerance) whose record_epsilon after `steps`
    is at most epsilon."""
    with _quiet_accountant():
        noise = mechanism_calibration.calibrate_dp_mechanism(
            RdpAccountant,
            lambda sigma: _steps(rate, sigma, steps),
            epsilon,
            delta,
            mechanism_calibration.LowerEndpointAndGuess(1e-2, 1.0),
        )
    return float(noise)


def noise_multiplier(cfg: Config, shard_sizes: list[int]) -> float:
    """sigma: privacy.noise_multiplier, or the least that keeps the smallest shard's records within
    privacy.epsilon over train.iterations. Every rank computes the same."""
    settings = cfg.privacy
    if settings.noise_multiplier is not None:
        return settings.noise_multiplier
    assert settings.epsilon is not None  # only called with privacy on
    rate = sampling_rate(cfg, min(shard_sizes))
    return calibrated_noise(rate, d_steps(cfg, cfg.train.iterations), settings.epsilon, settings.delta)


def validate_privacy(cfg: Config) -> None:
    """privacy.* on its own and with the options that would break its accounting or its scope."""
    settings = cfg.privacy
    if settings.epsilon is None:
        return
    require(settings.epsilon > 0, f"privacy.epsilon={settings.epsilon}: must be > 0 (null: no privacy)")
    require(0 < settings.delta < 1, f"privacy.delta={settings.delta}: must be in (0, 1), e.g. 1e-5")
    require(settings.clip > 0, f"privacy.clip={settings.clip}: the clipping norm must be > 0")
    sigma = settings.noise_multiplier
    require(
        sigma is None or sigma > 0,
        f"privacy.noise_multiplier={sigma}: must be > 0, or null to have it computed from privacy.epsilon",
    )
    require(
        not cfg.gan.reuse_real_batch,
        "privacy cannot be combined with gan.reuse_real_batch: every D step must draw its own Poisson sample, "
        "as the accounting assumes; set gan.reuse_real_batch=false",
    )
    require(
        cfg.gan.r1 == 0,
        "privacy cannot be combined with gan.r1: the R1 penalty is not clipped per record here; set gan.r1=0",
    )
    require(
        cfg.mdgan.aggregate != Aggregate.class_aware,
        "privacy cannot be combined with mdgan.aggregate=class_aware: it tells the server which classes each "
        "shard holds, which no noise covers; use another rule",
    )
    require(
        not cfg.train.compile,
        "privacy cannot be combined with train.compile: the per-record gradients run through torch.func; "
        "set train.compile=false",
    )


def check_budget(cfg: Config, shard_sizes: list[int]) -> None:
    """With the shards known: delta is below 1 / |shard|, and a given noise multiplier keeps
    privacy.epsilon over the whole run."""
    settings = cfg.privacy
    if settings.epsilon is None:
        return
    smallest, largest = min(shard_sizes), max(shard_sizes)  # each holds train.batch_size (validate_shards)
    require(
        settings.delta < 1 / largest,
        f"privacy.delta={settings.delta} is not below 1 / {largest}, the largest shard's size: releasing one "
        f"record in {largest} outright would meet it; set privacy.delta well below {1 / largest:.2g}",
    )
    if settings.noise_multiplier is None:
        return
    rate, steps = sampling_rate(cfg, smallest), d_steps(cfg, cfg.train.iterations)
    spent = record_epsilon(rate, settings.noise_multiplier, steps, settings.delta)
    if spent > settings.epsilon:
        needed = calibrated_noise(rate, steps, settings.epsilon, settings.delta)
        raise ConfigError(
            f"privacy.noise_multiplier={settings.noise_multiplier} spends epsilon={spent:.3g} by the end of "
            f"train.iterations={cfg.train.iterations} (the smallest shard, {smallest} records, sampled at "
            f"q={rate:.4g}), more than privacy.epsilon={settings.epsilon}: set privacy.noise_multiplier >= "
            f"{needed:.4g}, or null to have it computed, or train fewer iterations"
        )


class PrivacyLedger:
    """The epsilon spent so far by the worst-placed record (the smallest shard's): logged beside
    the scores, the checkpoints and the last iteration, in metrics.jsonl and tensorboard."""

    def __init__(self, cfg: Config, shard_sizes: list[int]) -> None:
        assert cfg.privacy.epsilon is not None  # built with privacy on
        self.cfg, self.delta = cfg, cfg.privacy.delta
        self.rate = sampling_rate(cfg, min(shard_sizes))
        self.noise = noise_multiplier(cfg, shard_sizes)
        log.info(
            "privacy: DP-SGD discriminators, noise multiplier %.4g, clip %.4g, sampling rate %.4g (smallest "
            "shard) to %.4g: (%.4g, %.2g)-DP per record of any shard after %d iterations",
            self.noise,
            cfg.privacy.clip,
            self.rate,
            sampling_rate(cfg, max(shard_sizes)),
            self.epsilon(cfg.train.iterations),
            self.delta,
            cfg.train.iterations,
        )

    def epsilon(self, done: int) -> float:
        return record_epsilon(self.rate, self.noise, d_steps(self.cfg, done), self.delta)

    def scalars(self, done: int) -> dict[str, float]:
        """{"privacy_epsilon": epsilon} after a score, a checkpoint or the last iteration; {}
        otherwise (the accountant takes a tenth of a second)."""
        cfg = self.cfg
        if done == cfg.train.iterations or any(
            every and done % every == 0 for every in (cfg.eval.every, cfg.checkpoint.every)
        ):
            return {"privacy_epsilon": self.epsilon(done)}
        return {}


def private_generator(cfg: Config, purpose: str, worker: int) -> torch.Generator:
    """Worker `worker`'s stream for DP-SGD's sampling or noise: from a secret seed that no one
    else can know, or with privacy.secret_noise=false from train.seed (reproducible, for tests)."""
    if cfg.privacy.secret_noise:
        return torch.Generator().manual_seed(secrets.randbits(63))
    return generator(cfg.train.seed, "privacy", purpose, worker)


def _steps(rate: float, noise: float, steps: int) -> dp_accounting.DpEvent:
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(rate, dp_accounting.GaussianDpEvent(noise)), steps
    )


@contextmanager
def _quiet_accountant() -> Iterator[None]:
    """dp-accounting warns for each fractional RDP order it cannot evaluate at a high sampling
    rate, and leaves that order out (the epsilon stays an upper bound): not news to a user."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)
