"""Run directories as the trainer and the runner leave them, written by hand for the results tests."""

from __future__ import annotations

import json
from pathlib import Path

from mdgan_dist import config
from mdgan_dist.config import Config


def make_run(
    root: Path,
    name: str,
    cfg: Config,
    records: list[dict],
    workers: int | None,
    finished: bool,
    group: str | None = None,
    floor: dict | None = None,
) -> None:
    """A run directory as the trainer and the runner leave it."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    config.save(cfg, run_dir / "config.yaml")
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    if workers is not None:
        (run_dir / "grid.json").write_text(json.dumps({"name": name, "group": group or name, "workers": workers}))
    if floor is not None:
        (run_dir / "real_floor.json").write_text(json.dumps(floor))
    if finished:
        (run_dir / "generator.pt").write_bytes(b"model")


def training(iteration: int, elapsed: float, workers: int, seconds: float = 0.1) -> dict:
    return {
        "iteration": iteration,
        "g_loss": 1.0,
        "d_loss": 0.5,
        "d_loss_per_worker": [0.5] * workers,
        "elapsed_seconds": elapsed,
        "iteration_seconds": seconds,
    }


def scores(iteration: int, elapsed: float, cs: float, fd: float, **extra: float) -> dict:
    return {"iteration": iteration, "elapsed_seconds": elapsed, "classifier_score": cs, "frechet_distance": fd, **extra}
