"""What the server shows and records: log lines, a progress bar, tensorboard, metrics.jsonl, sample grids."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

log = logging.getLogger(__name__)

REAL_FLOOR_FILE = "real_floor.json"
WORKERS_FILE = "workers.json"  # MD-GAN: the worker processes live at the end, and those dropped
RAW_PREFIX = "raw_"  # the raw G's scores, when the moving average is what is shown


class RunLogger:
    """Lives on the server only: one writer of every side effect in the run directory."""

    def __init__(self, run_dir: Path, show_progress: bool, start: int, name: str) -> None:
        """start: iterations already done (a resumed run); what was logged after them is dropped,
        since those iterations run again. name: the algorithm, shown on the progress bar."""
        self.run_dir = run_dir
        self.show_progress = show_progress
        self.name = name
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start + 1 if start else None)
        self.metrics = _metrics_up_to(run_dir / "metrics.jsonl", start)
        self.bar: tqdm | None = None
        self.floor: dict[str, float] = {}
        self.started = time.perf_counter()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def progress(self, iterations: range, total: int) -> Iterator[int]:
        self.bar = tqdm(
            iterations,
            desc=self.name,
            unit="it",
            initial=iterations.start,
            total=total,
            disable=not self.show_progress,
            dynamic_ncols=True,
        )
        yield from self.bar

    def scalars(
        self, iteration: int, d_loss_per_worker: list[float], lists: dict[str, list[int]] | None = None, **values: float
    ) -> None:
        """Training scalars; elapsed_seconds (since training started) is added to the record.
        lists: go to metrics.jsonl only."""
        values["elapsed_seconds"] = time.perf_counter() - self.started
        for name, value in values.items():
            self.writer.add_scalar(name, value, iteration)
        for worker, value in enumerate(d_loss_per_worker):
            self.writer.add_scalar(f"d_loss_worker/{worker}", value, iteration)
        self._record({"iteration": iteration, **values, "d_loss_per_worker": d_loss_per_worker, **(lists or {})})
        if self.bar is not None:
            self.bar.set_postfix(g_loss=f"{values['g_loss']:.3f}", d_loss=f"{values['d_loss']:.3f}", refresh=False)

    def real_floor(self, floor: dict[str, dict[str, float]]) -> None:
        """What real images score (Evaluator.real_floor): real_floor.json, a log line, and from now
        on a line next to each score in tensorboard (real/<score>, in the "scores" layout)."""
        self.floor = {name: value["mean"] for name, value in floor.items()}
        (self.run_dir / REAL_FLOOR_FILE).write_text(json.dumps(floor, indent=2) + "\n")
        shown = ", ".join(f"{name} {value['mean']:.4g} ± {value['sd']:.2g}" for name, value in floor.items())
        log.info("real images score: %s", shown)
        # One chart per score; the classes' shares (class_share/<c>) stay in their own section.
        charts = {
            name: ["Multiline", [f"score/{name}", f"score/{RAW_PREFIX}{name}", f"real/{name}"]]
            for name in floor
            if "/" not in name
        }
        self.writer.add_custom_scalars({"scores": charts})

    def scores(self, iteration: int, scores: dict[str, float]) -> None:
        """Image-quality scores: tensorboard under score/, and a record of their own in metrics.jsonl."""
        for name, value in scores.items():
            self.writer.add_scalar(f"score/{name}", value, iteration)
        for name, value in self.floor.items():
            self.writer.add_scalar(f"real/{name}", value, iteration)
        self._record({"iteration": iteration, **scores, "elapsed_seconds": time.perf_counter() - self.started})
        log.info("iteration %d: %s", iteration, ", ".join(f"{name} {value:.4g}" for name, value in scores.items()))

    def _record(self, record: dict) -> None:
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()

    def samples(self, iteration: int, images: torch.Tensor) -> None:
        """Images in [-1, 1] as one grid: a png per call and an image in tensorboard."""
        grid = make_grid(images, nrow=8, normalize=True, value_range=(-1, 1))
        save_image(grid, self.run_dir / "samples" / f"iteration_{iteration:06d}.png")
        self.writer.add_image("samples", grid, iteration)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.writer.close()
        self.metrics.close()


def _metrics_up_to(path: Path, start: int) -> TextIO:
    """metrics.jsonl opened for appending, holding only the records of iterations <= start."""
    kept = []
    if start and path.exists():
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["iteration"] <= start]
    path.write_text("".join(line + "\n" for line in kept))
    return open(path, "a", encoding="utf-8")
