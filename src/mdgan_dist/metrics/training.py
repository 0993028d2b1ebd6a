"""Training the evaluation classifier on a dataset's train part, deterministically from one seed,
and caching it."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from mdgan_dist.augment import random_shifts
from mdgan_dist.config import Config
from mdgan_dist.data import ImageDataset, load_shard, open_dataset
from mdgan_dist.metrics.classifier import EvalClassifier
from mdgan_dist.metrics.store import StoredClassifier, classifier_path, load_classifier, save_classifier
from mdgan_dist.seeding import generator, seeded

log = logging.getLogger(__name__)

BATCH_SIZE = 128
LEARNING_RATE = 3e-3
# Small train parts get more epochs: at least this many samples are seen, and at least MIN_EPOCHS.
MIN_SAMPLES_SEEN = 40_000
MIN_EPOCHS = 3
MAX_SHIFT = 2  # pixels of random translation: the light augmentation digits tolerate
EVAL_BATCH_SIZE = 500


def load_part(dataset: ImageDataset, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of a dataset part; with `limit`, that many spread evenly over it (parts
    may be sorted by class, so a prefix would miss classes)."""
    if limit is None or limit >= len(dataset):
        return load_shard(dataset, torch.arange(len(dataset)))
    return load_shard(dataset, torch.linspace(0, len(dataset) - 1, limit).round().long())


@torch.no_grad()
def accuracy(model: EvalClassifier, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    model.eval()
    correct = 0
    for chunk, chunk_labels in zip(images.split(EVAL_BATCH_SIZE), labels.split(EVAL_BATCH_SIZE), strict=True):
        correct += int((model(chunk.to(device)).argmax(1).cpu() == chunk_labels).sum())
    return correct / len(labels)


def train_classifier(
    train: ImageDataset, heldout: ImageDataset, seed: int, device: torch.device
) -> tuple[EvalClassifier, float]:
    """A classifier trained on `train` (Adam, one-cycle schedule, random shifts) and its accuracy
    on `heldout`. The same seed gives the same classifier on the same device."""
    images, labels = load_part(train)
    with seeded(seed, "eval_classifier"):
        model = EvalClassifier(train.image_shape, train.num_classes).to(device)
    stream = generator(seed, "eval_classifier", "batches")
    steps_per_epoch = math.ceil(len(labels) / BATCH_SIZE)
    epochs = max(MIN_EPOCHS, math.ceil(MIN_SAMPLES_SEEN / len(labels)))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=epochs * steps_per_epoch)
    log.info("training the evaluation classifier: %d images, %d epochs, on %s", len(labels), epochs, device)
    for epoch in range(epochs):
        model.train()
        # Dropout draws from the global RNG: fork it so training is reproducible and leaves it as it was.
        with seeded(seed, "eval_classifier", "dropout", epoch):
            for batch in torch.randperm(len(labels), generator=stream).split(BATCH_SIZE):
                inputs = random_shifts(images[batch], MAX_SHIFT, stream).to(device)
                loss = F.cross_entropy(model(inputs), labels[batch].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
        log.info("epoch %d/%d: last batch loss %.4f", epoch + 1, epochs, loss.item())
    heldout_images, heldout_labels = load_part(heldout)
    return model, accuracy(model, heldout_images, heldout_labels, device)


def ensure_classifier(cfg: Config, device: torch.device, force: bool = False) -> tuple[StoredClassifier, bool]:
    """The cached classifier for cfg.data, trained (from cfg.train.seed) and cached first when there
    is none or `force` is set; the flag says whether it was trained now."""
    heldout = open_dataset(cfg.data, "heldout")
    stored = None if force else load_classifier(cfg, heldout)
    if stored is not None:
        return stored, False
    model, heldout_accuracy = train_classifier(open_dataset(cfg.data, "train"), heldout, cfg.train.seed, device)
    path = classifier_path(cfg, heldout.image_shape)
    save_classifier(path, model, cfg.data.name, heldout_accuracy, cfg.train.seed)
    return StoredClassifier(model.cpu().eval(), heldout_accuracy, path), True
