"""Which layer of G carries the salt noise: each run's raw G, its moving average, and the two mixed.

    .venv/bin/python bench/salt_layers.py RUN_DIR [RUN_DIR ...] [--grids DIR]

For every finished run whose generator.pt holds both G and its moving average (gan.ema_halflife >
0), prints the salt and the classifier score of four generators, scored as the trainer scores
(eval.num_samples samples of the run's fixed evaluation noise):
    raw                 G as trained
    average             its moving average
    raw, output avg.    G with the output layer (the last layer holding weights) of the average
    average, output raw the average with G's own output layer
If the salt follows the output layer, the noise that makes it is in that layer's weights. With
--grids, the first 64 samples of each of the four also go to DIR/<run>_<generator>.png.
docs/results.md ("Salt noise") shows what the salt study's runs give.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from mdgan_dist import config
from mdgan_dist.algorithms.components import make_generator
from mdgan_dist.metrics import Evaluator

CPU = torch.device("cpu")


def output_layer(state: dict[str, torch.Tensor]) -> list[str]:
    """The keys of the last module that has a weight: G's output layer."""
    weights = [key for key in state if key.endswith(".weight")]
    last = weights[-1].removesuffix(".weight")
    return [key for key in state if key.startswith(last + ".")]


GRID_FILE_NAMES = {
    "raw": "raw",
    "average": "average",
    "raw, output avg.": "raw-output-avg",
    "average, output raw": "average-output-raw",
}


def scores(run_dir: Path, grids: Path | None) -> dict[str, dict[str, float]]:
    cfg = config.load(run_dir / "config.yaml")
    files = torch.load(run_dir / "generator.pt", map_location=CPU, weights_only=True)
    raw, average = files["raw_generator"], files["generator"]
    last = output_layer(raw)
    generators = {
        "raw": raw,
        "average": average,
        "raw, output avg.": {key: (average if key in last else raw)[key] for key in raw},
        "average, output raw": {key: (raw if key in last else average)[key] for key in raw},
    }
    evaluator = Evaluator(cfg, CPU)
    found = {}
    for name, state in generators.items():
        model = make_generator(cfg, evaluator.image_shape, evaluator.num_classes)
        model.load_state_dict(state)
        samples = evaluator.scored_samples(model, evaluator.num_classes)
        score = evaluator.score(samples)
        if grids is not None:
            grid = make_grid(samples[:64], nrow=8, normalize=True, value_range=(-1, 1))
            save_image(grid, grids / f"{run_dir.name}_{GRID_FILE_NAMES[name]}.png")
        found[name] = {"salt": score["salt"], "classifier_score": score["classifier_score"]}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories with generator.pt and config.yaml")
    parser.add_argument("--grids", type=Path, help="a folder for the four generators' sample grids")
    args = parser.parse_args()
    if args.grids is not None:
        args.grids.mkdir(parents=True, exist_ok=True)
    names = ("raw", "average", "raw, output avg.", "average, output raw")
    print("| run | " + " | ".join(f"{name}: salt (classifier score)" for name in names) + " |")
    print("|---|" + "---|" * len(names))
    for run_dir in args.runs:
        if not (run_dir / "generator.pt").exists():
            continue
        found = scores(run_dir, args.grids)
        cells = [f"{found[name]['salt']:.5f} ({found[name]['classifier_score']:.2f})" for name in names]
        print(f"| {run_dir.name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
