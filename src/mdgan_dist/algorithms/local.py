"""A whole GAN in one process on one shard: the standalone GAN, and every FL-GAN worker.

One iteration is MD-GAN's round with N = k = 1 through the same step functions: generate one
batch, L discriminator steps against it, the feedback of the updated D on it, one G step with that
feedback as upstream gradient. So an N = 1 MD-GAN run and a standalone run with the same seeds
compute the same numbers.
"""

from __future__ import annotations

from typing import Any

import torch

from mdgan_dist.algorithms.components import (
    label_classes,
    make_augment,
    make_discriminator,
    make_generator,
    make_sampler,
)
from mdgan_dist.algorithms.finite import gradient_check, require_finite
from mdgan_dist.algorithms.steps import (
    discriminator_adam,
    generate,
    generator_adam,
    generator_feedback,
    generator_step,
    sample_latent,
    train_discriminator,
)
from mdgan_dist.config import Config


class LocalGAN:
    def __init__(
        self,
        cfg: Config,
        image_shape: tuple[int, int, int],
        num_classes: int,
        shard: tuple[torch.Tensor, torch.Tensor],
        worker: int,
        noise: torch.Generator,
        device: torch.device,
        rank: int = 0,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        """worker: which worker's sampler stream this GAN draws its real batches from. noise: the
        stream of its latent vectors. D is always built as worker 0's, so that FL-GAN's workers start
        from one common model, as federated averaging does. rank: the process's, for errors.
        class_weights: the distribution of G's labels (data.clusters); None: uniform."""
        self.cfg = cfg
        self.worker = worker
        self.rank = rank
        self.num_classes = num_classes
        self.class_weights = class_weights
        self.noise = noise
        self.device = device
        self.generator = make_generator(cfg, image_shape, num_classes).to(device)
        self.g_optimizer = generator_adam(self.generator, cfg.optim)
        self.discriminator = make_discriminator(cfg, image_shape, num_classes, 0).to(device)
        self.d_optimizer = discriminator_adam(self.discriminator, cfg.optim)
        images, labels = shard
        self.sampler = make_sampler(cfg, images.to(device), labels.to(device), worker)
        self.augment = make_augment(cfg, worker)

    def iteration(self, iteration: int) -> tuple[float, float]:
        """One round; returns D's loss (its last step) and G's loss. The non-finite guard: a loss
        or G's gradient that is not finite raises NonFiniteError before G steps."""
        cfg = self.cfg
        noise, labels = sample_latent(
            self.noise, cfg.train.batch_size, cfg.model.z_dim, label_classes(cfg, self.num_classes), self.class_weights
        )
        labels = None if labels is None else labels.to(self.device)
        generated = generate(self.generator, noise.to(self.device), labels, self.num_classes)
        d_loss = train_discriminator(
            self.discriminator, self.d_optimizer, self.sampler, (generated.detach(), labels), cfg.gan, self.augment
        )
        feedback, g_loss, _ = generator_feedback(self.discriminator, generated, cfg.gan, labels, self.augment)
        # G's loss is D's verdict after its steps: finite only while D is.
        require_finite([d_loss], self.rank, iteration, f"the D loss of worker {self.worker}")
        require_finite([g_loss], self.rank, iteration, f"the G loss of worker {self.worker}")
        # One judge: every aggregation rule's upstream gradient is its feedback.
        check = gradient_check(self.rank, iteration)
        generator_step(self.g_optimizer, generated.unsqueeze(0), feedback.unsqueeze(0), None, check)
        return d_loss, g_loss

    def poison(self) -> None:
        """fault.nan_worker: D turns NaN, as a diverged one does."""
        with torch.no_grad():
            next(self.discriminator.parameters()).fill_(float("nan"))

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "g_optimizer": self.g_optimizer.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "augment": None if self.augment is None else self.augment.state_dict(),
            "noise": self.noise.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        if self.augment is not None:
            self.augment.load_state_dict(state["augment"])
        self.noise.set_state(state["noise"])
