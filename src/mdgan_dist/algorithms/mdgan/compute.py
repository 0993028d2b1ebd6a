"""The compute of MD-GAN's two roles, without the wire: what the server and a worker do with the
tensors they hold in one iteration. The roles call these; the bench times these same objects."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from mdgan_dist.algorithms.components import (
    label_classes,
    make_augment,
    make_discriminator,
    make_generator,
    make_sampler,
)
from mdgan_dist.algorithms.ema import average_of
from mdgan_dist.algorithms.steps import (
    aggregate_feedback,
    discriminator_adam,
    generate,
    generator_adam,
    generator_feedback,
    generator_step,
    sample_latent,
    snapshot_parameters,
    train_discriminator,
)
from mdgan_dist.config import Config
from mdgan_dist.seeding import generator

TRAINING, FEEDBACK = 0, 1  # a worker's two batches: X_d (its D trains against it), X_g (feedback on it)


@dataclass
class Generated:
    """One iteration's k batches, from generation to the G step."""

    batches: torch.Tensor  # k x b x C x H x W, with G's graph
    labels: torch.Tensor | None  # k x b class labels (conditional models)
    snapshot: dict[str, torch.Tensor] | None  # the parameters that generated them, when stale


class GeneratorCompute:
    """The server's G, its Adam, its moving average and its noise stream."""

    def __init__(
        self, cfg: Config, image_shape: tuple[int, int, int], num_classes: int, k: int, device: torch.device
    ) -> None:
        self.cfg, self.image_shape, self.num_classes, self.k, self.device = cfg, image_shape, num_classes, k, device
        self.generator = make_generator(cfg, image_shape, num_classes).to(device)
        self.optimizer = generator_adam(self.generator, cfg.optim)
        self.average = average_of(self.generator, cfg.gan.ema_halflife)
        self.noise = generator(cfg.train.seed, "noise")

    def generate(self, stale: bool = False) -> Generated:
        """G's k batches of one iteration; stale: through a copy of G's parameters, which the
        step of the iteration in flight leaves as they are (mdgan.overlap)."""
        cfg, batch, device = self.cfg, self.cfg.train.batch_size, self.device
        noise, labels = sample_latent(self.noise, self.k * batch, cfg.model.z_dim, label_classes(cfg, self.num_classes))
        labels = None if labels is None else labels.to(device)
        snapshot = snapshot_parameters(self.generator) if stale else None
        batches = generate(self.generator, noise.to(device), labels, self.num_classes, snapshot)
        return Generated(
            batches.view(self.k, batch, *self.image_shape),
            None if labels is None else labels.view(self.k, batch),
            snapshot,
        )

    def step(self, generated: Generated, feedbacks: list[torch.Tensor], batch_of: list[int], done: int) -> None:
        """G's step with each feedback as the upstream gradient of the batch it was computed on,
        then the moving average's update; `done` iterations are then complete."""
        upstream = aggregate_feedback(feedbacks, batch_of, self.k)
        generator_step(self.optimizer, generated.batches, upstream, generated.snapshot)
        if self.average is not None:
            self.average.update(self.generator, done)


@dataclass
class WorkerOutcome:
    feedback: torch.Tensor  # b x C x H x W: the gradient of G's loss with respect to X_g
    d_loss: float
    g_loss: float
    d_seconds: float
    feedback_seconds: float


class DiscriminatorCompute:
    """A worker's D, its Adam, its real-batch sampler and the augmentation D sees through."""

    def __init__(
        self,
        cfg: Config,
        image_shape: tuple[int, int, int],
        num_classes: int,
        shard: tuple[torch.Tensor, torch.Tensor],
        worker: int,
        device: torch.device,
    ) -> None:
        self.gan = cfg.gan
        images, labels = shard
        self.sampler = make_sampler(cfg, images.to(device), labels.to(device), worker)
        self.augment = make_augment(cfg, worker)
        self.discriminator = make_discriminator(cfg, image_shape, num_classes, worker).to(device)
        self.optimizer = discriminator_adam(self.discriminator, cfg.optim)

    def iteration(self, samples: torch.Tensor, labels: torch.Tensor | None) -> WorkerOutcome:
        """Paper's Algorithm 1, worker side: L discriminator steps against samples[TRAINING],
        then the feedback of the updated D on samples[FEEDBACK] (2 x b x C x H x W; labels 2 x b)."""
        started = time.perf_counter()
        fake = (samples[TRAINING], None if labels is None else labels[TRAINING])
        d_loss = train_discriminator(self.discriminator, self.optimizer, self.sampler, fake, self.gan, self.augment)
        trained = time.perf_counter()
        feedback, g_loss = generator_feedback(
            self.discriminator,
            samples[FEEDBACK],
            self.gan,
            None if labels is None else labels[FEEDBACK],
            self.augment,
        )
        return WorkerOutcome(feedback, d_loss, g_loss, trained - started, time.perf_counter() - trained)
