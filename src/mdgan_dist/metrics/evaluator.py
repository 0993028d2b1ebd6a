"""What the trainer calls: `check_evaluation` before training, an `Evaluator` to score G during it.

Scores, all against the dataset's held-out part:
    classifier_score  the Inception Score formula with the project's evaluation classifier (the
                      paper's "MNIST score"); higher is better, at most the number of classes
    frechet_distance  FID's formula in that classifier's penultimate-layer features; lower is better
    salt              the fraction of isolated bright pixels (specks of noise); real digits: about 0
    class_share_min,  the share of the rarest class among the classifier's verdicts, and the entropy
    class_entropy     of those shares in bits: a generator that misses or favours classes shows here
    is, fid           Inception Score (one split, as classifier_score) and FID in Inception's pool
                      features, only with eval.inception_weights set
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from mdgan_dist.config import Config
from mdgan_dist.data import ImageDataset, load_shard, open_dataset
from mdgan_dist.errors import ConfigError
from mdgan_dist.metrics.inception import InceptionFeatures
from mdgan_dist.metrics.scores import class_coverage, classifier_score, feature_statistics, frechet_distance, salt
from mdgan_dist.metrics.store import StoredClassifier, load_classifier, train_command
from mdgan_dist.metrics.training import EVAL_BATCH_SIZE, load_part
from mdgan_dist.models.sampling import sample_images, shown_labels
from mdgan_dist.seeding import generator

log = logging.getLogger(__name__)

MAX_REAL_SAMPLES = 10_000  # held-out images behind the real feature statistics
FLOOR_DRAWS = 5  # random draws of real images behind the real-data floor


def check_evaluation(cfg: Config) -> None:
    """Raises ConfigError, before any process group exists, when scoring is on but cannot run."""
    if cfg.eval.every == 0:
        return
    if cfg.eval.inception_weights is not None and not Path(cfg.eval.inception_weights).expanduser().is_file():
        raise ConfigError(
            f"eval.inception_weights={cfg.eval.inception_weights}: no such file; point it to a local copy of "
            "torch-fidelity's weights-inception-2015-12-05-6726825d.pth, or leave it unset to skip IS and FID"
        )
    _cached_classifier(
        cfg, open_dataset(cfg.data, "heldout"), f", or set eval.every=0 (now {cfg.eval.every}) to train without scores"
    )


def _cached_classifier(cfg: Config, heldout: ImageDataset, alternative: str = "") -> StoredClassifier:
    stored = load_classifier(cfg, heldout)
    if stored is None:
        raise ConfigError(
            f"scores need an evaluation classifier for data={cfg.data.name}, and none is cached in "
            f"eval.classifier_dir={cfg.eval.classifier_dir}: train it once with `{train_command(cfg)}`{alternative}"
        )
    return stored


class Evaluator:
    """Scores batches of images, or a generator's samples, against the held-out data."""

    def __init__(self, cfg: Config, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        heldout = open_dataset(cfg.data, "heldout")
        self.image_shape = heldout.image_shape
        self.num_classes = heldout.num_classes
        self.classifier = _cached_classifier(cfg, heldout).model.to(device)
        real, _ = load_part(heldout, MAX_REAL_SAMPLES)
        self.real_statistics = feature_statistics(self.classify(real)[1])
        self.inception: InceptionFeatures | None = None
        if cfg.eval.inception_weights is None:
            log.info(
                "IS and FID skipped: eval.inception_weights is not set; set it to a local Inception weights "
                "file (torch-fidelity's weights-inception-2015-12-05-6726825d.pth) to add them"
            )
        else:
            self.inception = InceptionFeatures(Path(cfg.eval.inception_weights).expanduser(), device)
            self.inception_real_statistics = feature_statistics(self.inception(real)[1])

    @torch.no_grad()
    def classify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities and penultimate features of images [n, C, H, W], on the CPU."""
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"images of shape {tuple(images.shape[1:])}, the classifier takes {self.image_shape}")
        probs, features = [], []
        for chunk in images.split(EVAL_BATCH_SIZE):
            hidden = self.classifier.features(chunk.to(self.device))
            probs.append(self.classifier.head(hidden).softmax(1).cpu())
            features.append(hidden.cpu())
        return torch.cat(probs), torch.cat(features)

    def score(self, images: torch.Tensor) -> dict[str, float]:
        """Scores of images [n, C, H, W] in [-1, 1], n >= 2: classifier_score, frechet_distance, salt
        and the class coverage, plus is and fid when Inception weights are set."""
        probs, features = self.classify(images)
        scores = {
            "classifier_score": classifier_score(probs),
            "frechet_distance": frechet_distance(*feature_statistics(features), *self.real_statistics),
            "salt": salt(images),
            **class_coverage(probs),
        }
        if self.inception is not None:
            logits, pooled = self.inception(images)
            scores["is"] = classifier_score(logits.softmax(1))
            scores["fid"] = frechet_distance(*feature_statistics(pooled), *self.inception_real_statistics)
        return scores

    def score_generator(
        self, model: nn.Module, num_classes: int, class_weights: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Scores of the samples that scored_samples draws."""
        return self.score(self.scored_samples(model, num_classes, class_weights))

    @torch.no_grad()
    def scored_samples(
        self, model: nn.Module, num_classes: int, class_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """eval.num_samples samples of G, drawn from the same fixed noise at every call (its own
        stream: no training RNG is touched); conditional samples cycle through the classes, or take
        each its share of the samples (class_weights: data.clusters' sizes)."""
        count = self.cfg.eval.num_samples
        noise = torch.randn(count, self.cfg.model.z_dim, generator=generator(self.cfg.train.seed, "eval"))
        labels = shown_labels(count, num_classes, class_weights) if self.cfg.model.conditional else None
        return sample_images(model, noise, labels, num_classes, self.device)

    def real_floor(self, draws: int = FLOOR_DRAWS) -> dict[str, dict[str, float]]:
        """What real images score, scored as G's samples are and as many: the mean and standard
        deviation, per score, over `draws` random draws of eval.num_samples train-split images.

        The train split, because the held-out images are the Frechet distance's reference: against
        themselves they would score 0. The draws do not depend on train.seed, so every run on a
        dataset shows the same floor."""
        train = open_dataset(self.cfg.data, "train")
        count = min(self.cfg.eval.num_samples, len(train))
        draws_scores = []
        for draw in range(draws):
            indices = torch.randperm(len(train), generator=generator(0, "real_floor", draw))[:count]
            draws_scores.append(self.score(load_shard(train, indices)[0]))
        floor = {}
        for name in draws_scores[0]:
            values = torch.tensor([scores[name] for scores in draws_scores], dtype=torch.float64)
            floor[name] = {"mean": float(values.mean()), "sd": float(values.std()) if draws > 1 else 0.0}
        return floor
