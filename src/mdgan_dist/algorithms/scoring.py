"""What a server does with its generator between iterations: sample grids and scores.

The same for every algorithm: MD-GAN's G, FL-GAN's averaged G and the standalone G are shown and
scored the same way, on fixed noise that no training stream draws from. With gan.ema_halflife the
grids and scores are the moving average's (ema.py), and the raw G's scores are logged next to
them with the prefix raw_.
"""

from __future__ import annotations

import torch
from torch import nn

from mdgan_dist.algorithms.ema import GeneratorAverage
from mdgan_dist.config import Config
from mdgan_dist.metrics import Evaluator
from mdgan_dist.models.sampling import sample_images, shown_labels
from mdgan_dist.run_logging import RAW_PREFIX, RunLogger
from mdgan_dist.seeding import generator


class Scoring:
    def __init__(
        self, cfg: Config, num_classes: int, device: torch.device, class_weights: torch.Tensor | None = None
    ) -> None:
        self.cfg = cfg
        self.num_classes = num_classes
        self.class_weights = class_weights  # how often the scored samples show each class (data.clusters)
        self.device = device
        count = cfg.log.num_samples
        self.grid_noise = torch.randn(count, cfg.model.z_dim, generator=generator(cfg.train.seed, "samples"))
        # ACGAN grids cycle through the classes, so every class shows.
        self.grid_labels = shown_labels(count, num_classes) if cfg.model.conditional else None
        self.evaluator = Evaluator(cfg, device) if cfg.eval.every else None

    def after(
        self, done: int, last: bool, model: nn.Module, average: GeneratorAverage | None, logger: RunLogger
    ) -> None:
        """After `done` iterations: a sample grid every log.sample_every, scores every eval.every,
        and both after the last iteration. model: the raw G; average: its moving average, if any."""
        shown = model if average is None else average.model
        if done % self.cfg.log.sample_every == 0 or last:
            logger.samples(done, self.samples(shown))
        if self.evaluator is not None and (done % self.cfg.eval.every == 0 or last):
            if not logger.floor:
                logger.real_floor(self.evaluator.real_floor())
            scores = self.evaluator.score_generator(shown, self.num_classes, self.class_weights)
            if average is not None:
                raw = self.evaluator.score_generator(model, self.num_classes, self.class_weights)
                scores.update({RAW_PREFIX + name: value for name, value in raw.items()})
            logger.scores(done, scores)

    def samples(self, model: nn.Module) -> torch.Tensor:
        return sample_images(model, self.grid_noise, self.grid_labels, self.num_classes, self.device)
