"""The server's compute in MD-GAN, without the wire: what it does with the tensors it holds in
one iteration (the workers': discriminators.py). The server calls this; the bench times the same
object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mdgan_dist.algorithms.aggregation import Judgements, aggregate
from mdgan_dist.algorithms.components import label_classes, make_generator
from mdgan_dist.algorithms.ema import average_of
from mdgan_dist.algorithms.finite import gradient_check
from mdgan_dist.algorithms.steps import (
    generate,
    generator_adam,
    generator_step,
    sample_latent,
    snapshot_parameters,
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
        self,
        cfg: Config,
        image_shape: tuple[int, int, int],
        num_classes: int,
        k: int,
        device: torch.device,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        self.cfg, self.image_shape, self.num_classes, self.k, self.device = cfg, image_shape, num_classes, k, device
        self.class_weights = class_weights  # the labels' distribution (data.clusters); None: uniform
        self.generator = make_generator(cfg, image_shape, num_classes).to(device)
        self.optimizer = generator_adam(self.generator, cfg.optim)
        self.average = average_of(self.generator, cfg.gan.ema_halflife)
        self.noise = generator(cfg.train.seed, "noise")

    def generate(self, stale: bool = False) -> Generated:
        """G's k batches of one iteration; stale: through a copy of G's parameters, which the
        step of the iteration in flight leaves as they are (mdgan.overlap)."""
        cfg, batch, device = self.cfg, self.cfg.train.batch_size, self.device
        classes = label_classes(cfg, self.num_classes)
        noise, labels = sample_latent(self.noise, self.k * batch, cfg.model.z_dim, classes, self.class_weights)
        labels = None if labels is None else labels.to(device)
        snapshot = snapshot_parameters(self.generator) if stale else None
        batches = generate(self.generator, noise.to(device), labels, self.num_classes, snapshot)
        return Generated(
            batches.view(self.k, batch, *self.image_shape),
            None if labels is None else labels.view(self.k, batch),
            snapshot,
        )

    def step(self, generated: Generated, judged: Judgements, done: int) -> None:
        """G's step from the judges' feedback, combined by mdgan.aggregate into the upstream
        gradient of the k batches, then the moving average's update; `done` iterations are then
        complete."""
        upstream = aggregate(self.cfg.mdgan.aggregate, judged)
        generator_step(self.optimizer, generated.batches, upstream, generated.snapshot, gradient_check(0, done - 1))
        if self.average is not None:
            self.average.update(self.generator, done)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "average": None if self.average is None else self.average.state_dict(),
            "noise": self.noise.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])
        self.noise.set_state(state["noise"])
