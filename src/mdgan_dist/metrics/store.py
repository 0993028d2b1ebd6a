"""The cache of trained evaluation classifiers under `eval.classifier_dir`, one file per dataset.

A file is keyed by dataset name, image shape and classifier version (and, for an imagefolder,
a hash of its root), and records what it was trained on next to the weights, so a stale or
foreign file is refused instead of silently scoring with the wrong classifier.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path

import torch

from mdgan_dist.checkpoint import atomic_save
from mdgan_dist.checkpoint import load as load_file
from mdgan_dist.config import Config, EvalConfig
from mdgan_dist.data import ImageDataset
from mdgan_dist.errors import ConfigError
from mdgan_dist.metrics.classifier import CLASSIFIER_VERSION, EvalClassifier


@dataclass(frozen=True)
class StoredClassifier:
    model: EvalClassifier
    heldout_accuracy: float
    path: Path


def classifier_path(cfg: Config, image_shape: tuple[int, int, int]) -> Path:
    channels, height, width = image_shape
    key = f"{cfg.data.name}-{channels}x{height}x{width}-v{CLASSIFIER_VERSION}"
    if cfg.data.name == "imagefolder":
        # Every imagefolder has the same name: its root tells one from another.
        root = str(Path(cfg.data.root).expanduser().resolve())
        key += "-" + hashlib.sha256(root.encode()).hexdigest()[:12]
    return Path(cfg.eval.classifier_dir).expanduser() / f"{key}.pt"


def train_command(cfg: Config, force: bool = False) -> str:
    """The `mdgan-eval train-classifier` command line that caches a classifier for cfg.data."""
    data = cfg.data
    overrides = ["--force"] if force else []
    overrides.append(f"data={data.name}")
    if data.name != "mnist5k":  # the only dataset that needs no files
        overrides.append(f"data.root={data.root}")
    if data.image_size is not None:
        overrides.append(f"data.image_size={data.image_size}")
    if data.name == "imagefolder":
        overrides.append(f"data.channels={data.channels}")
    if cfg.eval.classifier_dir != EvalConfig.classifier_dir:
        overrides.append(f"eval.classifier_dir={cfg.eval.classifier_dir}")
    return shlex.join(["mdgan-eval", "train-classifier", *overrides])


def save_classifier(path: Path, model: EvalClassifier, dataset: str, heldout_accuracy: float, seed: int) -> None:
    state = {
        "version": CLASSIFIER_VERSION,
        "dataset": dataset,
        "image_shape": list(model.image_shape),
        "num_classes": model.num_classes,
        "heldout_accuracy": heldout_accuracy,
        "seed": seed,
        "state_dict": {name: tensor.cpu() for name, tensor in model.state_dict().items()},
    }
    atomic_save(state, path)


def load_classifier(cfg: Config, dataset: ImageDataset) -> StoredClassifier | None:
    """The cached classifier for cfg.data (on the CPU, in eval mode), or None when there is none.

    Raises ConfigError when the file exists but cannot be used for `dataset`.
    """
    path = classifier_path(cfg, dataset.image_shape)
    if not path.exists():
        return None
    retrain = f"retrain it with `{train_command(cfg, force=True)}`"
    try:
        state = load_file(path, torch.device("cpu"))
        found = (state["version"], state["dataset"], tuple(state["image_shape"]), state["num_classes"])
    except Exception as error:  # a torn or foreign file: whatever unpickling raised
        raise ConfigError(f"the evaluation classifier {path} is unreadable ({error}): {retrain}") from error
    expected = (CLASSIFIER_VERSION, cfg.data.name, dataset.image_shape, dataset.num_classes)
    if found != expected:
        raise ConfigError(
            f"the evaluation classifier {path} is for (version, dataset, image shape, classes) = {found}, "
            f"expected {expected}: {retrain}"
        )
    model = EvalClassifier(dataset.image_shape, dataset.num_classes)
    model.load_state_dict(state["state_dict"])
    return StoredClassifier(model.eval(), float(state["heldout_accuracy"]), path)
