"""`mdgan-eval`: train the evaluation classifier once per dataset; score a run, a checkpoint or images.

    mdgan-eval train-classifier [--force] [OVERRIDES...]
    mdgan-eval score PATH [OVERRIDES...]
    (or python -m mdgan_dist.metrics.cli ...)

OVERRIDES are the trainer's Hydra overrides, composed from the same conf/ and schema, e.g.
`data=mnist data.root=DATA eval.classifier_dir=DIR train.device=cpu`. The subcommand, PATH and
--force are parsed by argparse; every other argument, in any position, is a Hydra override.

train-classifier trains the classifier for the dataset `data` selects (seeded by train.seed) and
caches it in eval.classifier_dir; with a valid one already cached it only reports it, --force
retrains. It prints {"classifier": file, "heldout_accuracy": ..., "trained": true|false} as JSON.

score prints the scores as one JSON object, with what real images score next to them under
"real_floor" (per score its mean and standard deviation over draws of as many train-split images,
Evaluator.real_floor). PATH is one of
  - a run directory (its final generator.pt), a checkpoint directory (its server.pt), or such a
    file: G is rebuilt from the run's config.yaml (next to the file, or two levels up for a
    checkpoint) and eval.num_samples of its samples are scored. OVERRIDES apply on top of that
    saved config: each key they name or change (a group such as data=mnist counts as its whole
    node) replaces the saved value, e.g. eval.num_samples=2000 or data.root=/moved/data;
  - a folder of png/jpg images (searched recursively), resized to the dataset's image shape and
    scored against the dataset OVERRIDES select (mnist5k by default).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mdgan_dist.checkpoint import SERVER_FILE, shown_generator
from mdgan_dist.checkpoint import load as load_file
from mdgan_dist.compose import compose, compose_raw, typed_config
from mdgan_dist.config import Config, Device
from mdgan_dist.config import load as load_config
from mdgan_dist.data import load_shard
from mdgan_dist.data.imagefolder import ImageFolderDataset
from mdgan_dist.errors import ConfigError
from mdgan_dist.metrics.evaluator import Evaluator
from mdgan_dist.metrics.training import ensure_classifier
from mdgan_dist.models import build_generator
from mdgan_dist.run_directory import CLUSTERS_FILE

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GENERATOR_FILE = "generator.pt"
_ABSENT = object()


def run_config(saved: Path, overrides: list[str]) -> Config:
    """A run's saved config with the overrides on top: every key an override names or changes
    (relative to the default config) takes its composed value."""
    try:
        merged = OmegaConf.structured(load_config(saved))
    except OmegaConfBaseException as error:
        raise ConfigError(f"{saved} is not a config of this version of mdgan-dist: {str(error).strip()}") from error
    if overrides:
        chosen = compose_raw(overrides)
        default = _leaves(compose_raw([]))
        changed = {key for key, value in _leaves(chosen).items() if default.get(key, _ABSENT) != value}
        named = {
            override.key_or_group
            for override in OverridesParser.create().parse_overrides(overrides)
            if OmegaConf.select(chosen, override.key_or_group, default=_ABSENT) is not _ABSENT
        }
        for key in sorted(changed | named):
            OmegaConf.update(merged, key, OmegaConf.select(chosen, key), merge=False)
    return typed_config(merged)


def _leaves(node: DictConfig) -> dict[str, object]:
    """Dotted key -> value of every leaf of a config."""
    leaves: dict[str, object] = {}

    def visit(value: object, prefix: str) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                visit(child, f"{prefix}{key}.")
        else:
            leaves[prefix[:-1]] = value

    visit(OmegaConf.to_container(node, resolve=True), "")
    return leaves


def device_for(cfg: Config) -> torch.device:
    """train.device as one process sees it: auto is the GPU when there is one."""
    if cfg.train.device == Device.cpu or (cfg.train.device == Device.auto and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def train_classifier(overrides: list[str], force: bool) -> dict[str, object]:
    cfg = compose(overrides)
    stored, trained = ensure_classifier(cfg, device_for(cfg), force)
    verb = "trained" if trained else "already cached (--force retrains)"
    log.info(
        "evaluation classifier for data=%s %s: held-out accuracy %.4f", cfg.data.name, verb, stored.heldout_accuracy
    )
    return {"classifier": str(stored.path), "heldout_accuracy": stored.heldout_accuracy, "trained": trained}


def score(path: Path, overrides: list[str]) -> dict[str, object]:
    weights = _generator_file(path)
    if weights is not None:
        return _score_generator(weights, overrides)
    if path.is_dir():
        return _score_images(path, overrides)
    raise ConfigError(f"{path} does not exist: give a run or checkpoint directory, or a folder of images")


def _generator_file(path: Path) -> Path | None:
    if path.is_file():
        return path
    found = [path / name for name in (GENERATOR_FILE, SERVER_FILE) if (path / name).is_file()]
    return found[0] if found else None


def _score_generator(weights: Path, overrides: list[str]) -> dict[str, object]:
    # A run directory holds config.yaml; a checkpoint sits in <run>/checkpoints/iteration_*/.
    candidates = [weights.parent / "config.yaml", weights.parent.parent.parent / "config.yaml"]
    saved = next((candidate for candidate in candidates if candidate.is_file()), None)
    if saved is None:
        raise ConfigError(f"no config.yaml for {weights}: looked for {', '.join(map(str, candidates))}")
    cfg = run_config(saved, overrides)
    state = load_file(weights, torch.device("cpu"))  # first: a file that is refused costs nothing more
    device = device_for(cfg)
    evaluator = Evaluator(cfg, device)
    classes = cfg.data.clusters or evaluator.num_classes  # what G is conditioned on
    # data.clusters: G draws each cluster as often as the run's clusters.pt says its images are
    drawn = load_file(saved.parent / CLUSTERS_FILE, torch.device("cpu"))["counts"] if cfg.data.clusters else None
    model = build_generator(cfg.model, evaluator.image_shape, classes)
    try:
        model.load_state_dict(shown_generator(state))
    except (KeyError, RuntimeError) as error:
        raise ConfigError(f"{weights} holds no generator for the model of {saved}: {error}") from error
    return _with_floor(evaluator, evaluator.score_generator(model.to(device), classes, drawn))


def _score_images(folder: Path, overrides: list[str]) -> dict[str, object]:
    cfg = compose(overrides)
    evaluator = Evaluator(cfg, device_for(cfg))
    paths = sorted(str(path) for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < 2:
        raise ConfigError(f"{folder} holds {len(paths)} png/jpg images: scores need at least 2")
    channels, height, width = evaluator.image_shape
    if height != width:
        raise ConfigError(f"data={cfg.data.name} has {height}x{width} images: only square images are supported")
    # Read, converted to grey or RGB and resized exactly as the dataset's own images are.
    images = ImageFolderDataset(paths, torch.zeros(len(paths)), evaluator.num_classes, channels, height)
    return _with_floor(evaluator, evaluator.score(load_shard(images, torch.arange(len(paths)))[0]))


def _with_floor(evaluator: Evaluator, scores: dict[str, float]) -> dict[str, object]:
    return {**scores, "real_floor": evaluator.real_floor()}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mdgan-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train-classifier",
        help="train and cache the evaluation classifier",
        usage="mdgan-eval train-classifier [--force] [OVERRIDES...]",
    )
    train.add_argument("--force", action="store_true", help="retrain even if a valid one is cached")
    scorer = commands.add_parser(
        "score", help="score a run, a checkpoint or a folder of images", usage="mdgan-eval score PATH [OVERRIDES...]"
    )
    scorer.add_argument("path", type=Path, help="run or checkpoint directory, generator file, or image folder")
    return parser


def run(argv: list[str] | None = None) -> int:
    # Overrides are whatever argparse does not know, so they may come before or after --force.
    arguments = parser()
    args, overrides = arguments.parse_known_args(argv)
    options = [argument for argument in overrides if argument.startswith("-")]
    if options:
        arguments.error(f"unrecognized options: {' '.join(options)} (Hydra overrides look like key=value)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.command == "train-classifier":
            result: dict = train_classifier(overrides, args.force)
        else:
            result = score(args.path, overrides)
    except ConfigError as error:
        log.error("config error: %s", error)
        return 2
    print(json.dumps(result))
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
