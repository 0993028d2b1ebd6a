"""The seeded parts every algorithm builds the same way: G, D, a worker's real-batch sampler and
the augmentation its discriminator sees images through.

Seeds are named streams (seeding.py), so MD-GAN's server and workers, FL-GAN's ranks, the
standalone GAN and the tests' single-process references all build identical components. G and D
come prepared as train.precision, train.channels_last and train.compile say (acceleration.py);
callers move them to their device.
"""

from __future__ import annotations

import torch
from torch import nn

from mdgan_dist.algorithms.acceleration import prepare_model
from mdgan_dist.augment import Augment, parse_policy
from mdgan_dist.config import Config
from mdgan_dist.data import PoissonSampler, Sampler, ShardSampler
from mdgan_dist.models import build_discriminator, build_generator
from mdgan_dist.privacy import private, private_generator, sampling_rate
from mdgan_dist.seeding import derive_seed, seeded


def make_generator(cfg: Config, image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    with seeded(cfg.train.seed, "generator"):
        model = build_generator(cfg.model, image_shape, num_classes)
    return prepare_model(model, cfg.train)


def make_discriminator(
    cfg: Config, image_shape: tuple[int, int, int], num_classes: int, worker: int, stream: str = "discriminator"
) -> nn.Module:
    """Worker `worker`'s D, initialised from its stream ("untrained": a liar's second D, lies.py)."""
    with seeded(cfg.train.seed, stream, worker):
        model = build_discriminator(cfg.model, image_shape, num_classes)
    return prepare_model(model, cfg.train)


def make_sampler(cfg: Config, images: torch.Tensor, labels: torch.Tensor, worker: int) -> Sampler:
    """Worker `worker`'s real batches: seeded epochs of its shard, or DP-SGD's Poisson samples under
    privacy.* (each record drawn with probability b / |shard|, from the worker's private stream)."""
    if private(cfg):
        return PoissonSampler(
            images, labels, sampling_rate(cfg, len(images)), private_generator(cfg, "sampling", worker)
        )
    return ShardSampler(images, labels, cfg.train.batch_size, derive_seed(cfg.train.seed, "sampler", worker))


def make_augment(cfg: Config, worker: int) -> Augment | None:
    """gan.augment on worker `worker`'s stream; None when it is off. The stream is the worker's,
    like its sampler: it stays when the discriminators are swapped."""
    policy = parse_policy(cfg.gan.augment)
    return Augment(policy, derive_seed(cfg.train.seed, "augment", worker)) if policy else None


def label_classes(cfg: Config, num_classes: int) -> int | None:
    """The number of classes generated samples are labelled with: ACGAN only."""
    return num_classes if cfg.model.conditional else None
