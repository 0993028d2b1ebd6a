"""Differentially private discriminators (privacy.*): the accounting, its checks, the secret streams.

A worker's D steps by DP-SGD (Abadi et al. 2016; algorithms/mdgan/private.py): each step's real
batch is a Poisson sample of the worker's shard at rate q = b / |shard|, each record's gradient of
D's loss is clipped to norm C, and Gaussian noise of std sigma x C is added to their sum. One step
is the Poisson-sampled Gaussian mechanism with noise multiplier sigma. The shard sizes are public
(the schedule and q are computed from them), so neighbouring shards have the same size and differ
in one record, replaced by another: the REPLACE_ONE relation, which dp-accounting's privacy loss
distribution (PLD) accountant bounds (Koskela et al. 2020; Doroshenko et al. 2022). A record of
shard n enters worker n's steps only, whichever D the worker holds, so its privacy loss is that of
T x L such steps composed. The smallest shard has the highest rate and the worst epsilon: the
run's. docs/design.md, "Privacy", says what this covers and what it does not.
"""

from __future__ import annotations

import logging
import secrets
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dp_accounting
import torch
from dp_accounting import NeighboringRelation, mechanism_calibration
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from mdgan_dist.config import Aggregate, Config
from mdgan_dist.errors import ConfigError
from mdgan_dist.seeding import generator
from mdgan_dist.validation import require

log = logging.getLogger(__name__)
REPLACE_ONE = NeighboringRelation.REPLACE_ONE
RELEASED_FILE = "privacy_released.json"  # privacy_ledger.PrivacyLedger's count, in the run directory
ACCOUNTING = "pld-replace-one"  # in a private checkpoint's settings: one accounted otherwise is refused
PLD_INTERVAL = 1e-3  # its loss grid, rounded up (a bound still); 1e-4 moves the 4th decimal, 10x slower
_FROM_SMALL_NOISE = mechanism_calibration.LowerEndpointAndGuess(1e-2, 1.0)

# torch's CPU generator state (CPUGeneratorImplStateLegacy, torch 2.x): a 64-bit seed, `left` and
# `seeded` (ints), `next` (64 bits), then the Mersenne Twister's 624 words, each in 64 bits.
MT_STATE_BYTES, MT_WORDS, MT_WORDS_OFFSET = 5056, 624, 24


def private(cfg: Config) -> bool:
    return cfg.privacy.epsilon is not None


def d_steps(cfg: Config, iterations: int) -> int:
    """A worker's D steps in `iterations` iterations: gan.disc_steps each."""
    return iterations * cfg.gan.disc_steps


def budgeted_iterations(cfg: Config) -> int:
    """The iterations whose D steps the budget covers: the run's, and those that resumes may run
    a second time (privacy.redo_iterations): their feedback went out before the crash."""
    return cfg.train.iterations + cfg.privacy.redo_iterations


def sampling_rate(cfg: Config, shard_size: int) -> float:
    """q: the expected real batch is train.batch_size records."""
    return cfg.train.batch_size / shard_size


def record_epsilon(
    rate: float, noise_multiplier: float, steps: int, delta: float, relation: NeighboringRelation = REPLACE_ONE
) -> float:
    """The epsilon of (epsilon, delta)-DP for one record after `steps` sampled Gaussian steps,
    between shards that differ in one record (`relation`: replaced, the run's; or added or removed,
    as the DP-SGD literature reports)."""
    if steps == 0:
        return 0.0
    accountant = _accountant(relation)
    accountant.compose(_steps(rate, noise_multiplier, steps))
    return float(accountant.get_epsilon(delta))


def calibrated_noise(rate: float, steps: int, epsilon: float, delta: float) -> float:
    """The smallest noise multiplier (to the search's tolerance) whose record_epsilon after `steps`
    is at most epsilon. The search starts from the RDP accountant's answer for added or removed
    records, quick to compute and near this one: a PLD at a much smaller noise takes gigabytes."""
    with _quiet_accountant():
        near = mechanism_calibration.calibrate_dp_mechanism(
            RdpAccountant, lambda sigma: _steps(rate, sigma, steps), epsilon, delta, _FROM_SMALL_NOISE
        )
    noise = mechanism_calibration.calibrate_dp_mechanism(
        _accountant,
        lambda sigma: _steps(rate, sigma, steps),
        epsilon,
        delta,
        mechanism_calibration.LowerEndpointAndGuess(near / 2, near),
    )
    return float(noise)


def noise_multiplier(cfg: Config, shard_sizes: list[int]) -> float:
    """sigma: privacy.noise_multiplier, or the least that keeps the smallest shard's records within
    privacy.epsilon over the budgeted iterations. Every rank computes the same."""
    settings = cfg.privacy
    if settings.noise_multiplier is not None:
        return settings.noise_multiplier
    assert settings.epsilon is not None  # only called with privacy on
    rate = sampling_rate(cfg, min(shard_sizes))
    return calibrated_noise(rate, d_steps(cfg, budgeted_iterations(cfg)), settings.epsilon, settings.delta)


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
        cfg.resume in ("auto", "never") or _inside(cfg.resume, cfg.run.dir),
        f"privacy with resume={cfg.resume}: a private run resumes only from a checkpoint of its own run.dir, "
        f"where the count of the iterations it released lives ({RELEASED_FILE}); resumed elsewhere, the "
        "checkpoint would spend the budget again, uncounted. Resume with resume=auto and run.dir set to its run",
    )
    require(
        settings.redo_iterations >= 0,
        f"privacy.redo_iterations={settings.redo_iterations}: the iterations resumes may run again, >= 0",
    )
    require(
        not cfg.gan.reuse_real_batch,
        "privacy cannot be combined with gan.reuse_real_batch: every D step must draw its own Poisson sample, "
        "as the accounting assumes; set gan.reuse_real_batch=false",
    )
    require(
        cfg.data.clusters == 0,
        "privacy cannot be combined with data.clusters: the server learns each worker's per-cluster sums of "
        "images, without noise; set data.clusters=0",
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
        cfg.gan.augment == "none",
        f"privacy cannot be combined with gan.augment={cfg.gan.augment!r}: its draws come from a stream seeded "
        "by train.seed and shared with the generated half, so which augmentation a record gets, and where the "
        "stream stands after a Poisson sample of unknown size, would follow from public values; set "
        "gan.augment=none",
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
    rate, steps = sampling_rate(cfg, smallest), d_steps(cfg, budgeted_iterations(cfg))
    spent = record_epsilon(rate, settings.noise_multiplier, steps, settings.delta)
    if spent > settings.epsilon:
        needed = calibrated_noise(rate, steps, settings.epsilon, settings.delta)
        raise ConfigError(
            f"privacy.noise_multiplier={settings.noise_multiplier} spends epsilon={spent:.3g} by the end of "
            f"train.iterations={cfg.train.iterations} + privacy.redo_iterations={settings.redo_iterations} "
            f"(the smallest shard, {smallest} records, sampled at "
            f"q={rate:.4g}), more than privacy.epsilon={settings.epsilon}: set privacy.noise_multiplier >= "
            f"{needed:.4g}, or null to have it computed, or train fewer iterations"
        )


def private_generator(cfg: Config, purpose: str, worker: int) -> torch.Generator:
    """Worker `worker`'s stream for DP-SGD's sampling or noise: secret (secret_generator), or with
    privacy.secret_noise=false from train.seed (reproducible, for tests)."""
    if cfg.privacy.secret_noise:
        return secret_generator()
    return generator(cfg.train.seed, "privacy", purpose, worker)


def secret_generator() -> torch.Generator:
    """A CPU generator whose whole Mersenne Twister state, 624 words of 32 bits, comes from the
    operating system's secure source. Not manual_seed: it keeps 32 bits of any seed, few enough to
    try every one against what a worker sends and take the noise back out."""
    generator = torch.Generator()
    state = bytearray(generator.get_state().numpy().tobytes())
    if len(state) != MT_STATE_BYTES:
        raise RuntimeError(f"torch's generator state is {len(state)} bytes, not the {MT_STATE_BYTES} expected")
    words = [secrets.randbits(32) for _ in range(MT_WORDS)]
    struct.pack_into(f"<{MT_WORDS}Q", state, MT_WORDS_OFFSET, *words)
    struct.pack_into("<QiiQ", state, 0, 0, 1, 1, 0)  # no seed to tell; left = 1: the next draw twists the words
    generator.set_state(torch.frombuffer(state, dtype=torch.uint8).clone())
    return generator


def _inside(path: str, run_dir: str | None) -> bool:
    return run_dir is not None and Path(path).resolve().is_relative_to(Path(run_dir).resolve())


def _accountant(relation: NeighboringRelation = REPLACE_ONE) -> PLDAccountant:
    return PLDAccountant(relation, value_discretization_interval=PLD_INTERVAL)


def _steps(rate: float, noise: float, steps: int) -> dp_accounting.DpEvent:
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(rate, dp_accounting.GaussianDpEvent(noise)), steps
    )


@contextmanager
def _quiet_accountant() -> Iterator[None]:
    """dp-accounting's RDP accountant warns for each fractional order it cannot evaluate at a high
    sampling rate, and leaves that order out (its epsilon stays an upper bound): not news to a user."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)
