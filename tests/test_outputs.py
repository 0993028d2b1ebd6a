"""The run directory holds what a user expects: config, tensorboard events, samples, metrics."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ITERATIONS, load_config

METRIC_KEYS = {"iteration", "g_loss", "d_loss", "server_bytes_sent", "server_bytes_recv", "iteration_seconds", "swaps"}


def test_run_directory_holds_config_metrics_samples_and_tensorboard(finished_run: tuple[Path, int]) -> None:
    run_dir, num_workers = finished_run
    cfg = load_config(run_dir)
    assert cfg.run.dir == str(run_dir) and cfg.train.iterations == ITERATIONS

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    for record in records:
        assert METRIC_KEYS <= record.keys()
        assert len(record["d_loss_per_worker"]) == num_workers
        assert abs(record["d_loss"] - sum(record["d_loss_per_worker"]) / num_workers) < 1e-9
        assert record["iteration_seconds"] > 0

    grids = sorted(p.name for p in (run_dir / "samples").glob("*.png"))
    assert grids == ["iteration_000003.png", "iteration_000006.png"]  # log.sample_every=3
    with Image.open(run_dir / "samples" / grids[-1]) as grid:
        assert grid.size[0] > 8 * 28  # 64 samples, 8 per row

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert METRIC_KEYS - {"iteration"} <= scalars
    assert {f"d_loss_worker/{n}" for n in range(num_workers)} <= scalars
    assert [event.step for event in events.Scalars("g_loss")] == list(range(1, ITERATIONS + 1))
    assert events.Tags()["images"] == ["samples"]
