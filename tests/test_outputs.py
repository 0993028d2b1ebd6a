"""The run directory holds what a user expects: config, tensorboard events, samples, metrics."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ITERATIONS, load_config

METRIC_KEYS = {"iteration", "g_loss", "d_loss", "server_bytes_sent", "server_bytes_recv", "iteration_seconds", "swaps"}
TIMINGS = {
    "time_generate",
    "time_wait",
    "time_backward",
    "time_worker_d",
    "time_worker_feedback",
    "time_worker_max",
    "time_worker_ahead",
}


def test_run_directory_holds_config_metrics_samples_and_tensorboard(finished_run: tuple[Path, int]) -> None:
    run_dir, num_workers = finished_run
    cfg = load_config(run_dir)
    assert cfg.run.dir == str(run_dir) and cfg.train.iterations == ITERATIONS

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    timed = cfg.privacy.epsilon is None  # a private worker's feedback reports no seconds (privacy.*)
    for record in records:
        assert METRIC_KEYS <= record.keys()
        assert len(record["d_loss_per_worker"]) == num_workers  # each worker's, also W of them per process
        assert abs(record["d_loss"] - sum(record["d_loss_per_worker"]) / num_workers) < 1e-9
        assert record["iteration_seconds"] > 0
        # Where the iteration's time went, and whose feedback G used.
        assert TIMINGS <= record.keys() and all(record[key] >= 0 for key in TIMINGS)
        if timed:
            assert record["time_worker_d"] > 0 and record["time_worker_feedback"] > 0
            mean_worker = record["time_worker_d"] + record["time_worker_feedback"]
            assert record["time_worker_max"] >= mean_worker - 2e-6  # microseconds on the wire
        else:
            assert record["time_worker_d"] == record["time_worker_feedback"] == record["time_worker_ahead"] == 0
        assert record["feedbacks_used"] == num_workers and record["feedbacks_late"] == 0
    # mdgan.real_ahead, on by default: a real half computed ahead wherever no control message came first.
    assert not timed or any(record["time_worker_ahead"] > 0 for record in records)

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


def test_every_rank_writes_its_bytes_and_peak_memory(finished_run: tuple[Path, int]) -> None:
    run_dir, num_workers = finished_run
    processes = num_workers // load_config(run_dir).mdgan.workers_per_rank
    stats = [json.loads((run_dir / f"stats_rank{rank}.json").read_text()) for rank in range(processes + 1)]
    assert [s["role"] for s in stats] == ["mdgan server"] + ["mdgan worker"] * processes
    assert all(s["peak_rss_bytes"] > 100 * 2**20 and s["cuda_peak_bytes"] is None for s in stats)
    # Every byte sent was received: by the workers from the server and each other, and back.
    assert sum(s["bytes_sent"] for s in stats) == sum(s["bytes_recv"] for s in stats) > 0
    workers = stats[1:]
    assert all(w["iterations_trained"] == ITERATIONS and w["swaps"] == stats[0]["swaps"] for w in workers)
    assert sum(w["swap_bytes_sent"] for w in workers) == sum(w["swap_bytes_recv"] for w in workers)
    assert (stats[0]["swaps"] > 0) == (workers[0]["swap_bytes_sent"] > 0)
