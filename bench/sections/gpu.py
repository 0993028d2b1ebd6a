"""Section gpu: the one-GPU table. MD-GAN with every rank on one device (gloo between the
processes, `--device cuda`), N = 10, 25 and 50 workers packed onto one worker process (or as many
as --gpu-processes says), b = 100, for the default model on 28 x 28 grey images and the paper's
CIFAR10 CNN on 32 x 32 colour ones: iteration time with its range over repeated jobs, where it
goes, and the device memory the largest process peaked at. The images are random, written as an
image folder (what they show costs no compute), so it needs no dataset. Only when named; on a
CPU (--quick, the test) it runs the same jobs small."""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from jobs import Result, Runner, Spec
from mdgan_dist.experiments.formatting import mib, ms
from mdgan_dist.experiments.tables import keyed

from .overlap import where_time_goes
from .table import Table, range_column

CLASSES = 10
HELDOUT_SHARE = 0.1  # the image folder holds out every tenth image (data/imagefolder.py)


@dataclass(frozen=True)
class Model:
    name: str
    channels: int
    size: int
    overrides: tuple[str, ...]


MODELS = (
    Model("default model (conditional DCGAN, half width)", 1, 28, ()),
    Model("paper's CIFAR10 CNN", 3, 32, ("model=cifar10_cnn", "model.width=1.0")),  # its published width
)


def random_image_folder(root: Path, model: Model, images: int, seed: int = 0) -> Path:
    """`images` random images of the model's shape in CLASSES class folders, once per shape."""
    folder = root / f"random-{model.channels}x{model.size}-{images}"
    if folder.exists():
        return folder
    stream = np.random.default_rng(seed)
    shape = (model.size, model.size) if model.channels == 1 else (model.size, model.size, 3)
    for index in range(images):
        klass = folder / f"class{index % CLASSES}"
        klass.mkdir(parents=True, exist_ok=True)
        Image.fromarray(stream.integers(0, 256, shape, dtype=np.uint8)).save(klass / f"{index:05d}.png")
    return folder


def images_needed(workers: int, batch: int) -> int:
    """Enough images that each of `workers` shards holds a batch once a tenth is held out."""
    return int(workers * batch / (1 - HELDOUT_SHARE) * 1.1) + CLASSES


def device_peak(run: Result) -> int | None:
    """The largest process's peak device memory (None on a CPU)."""
    peaks = [stats["cuda_peak_bytes"] for stats in run.stats.values() if stats.get("cuda_peak_bytes") is not None]
    return max(peaks) if peaks else None


def section_gpu(args: argparse.Namespace, runner: Runner) -> Table:
    rows = []
    for model in MODELS:
        data = random_image_folder(runner.scratch, model, images_needed(max(args.gpu_workers), args.gpu_batch))
        overrides = (
            "data.name=imagefolder",
            f"data.root={data}",
            f"data.image_size={model.size}",
            f"data.channels={model.channels}",
            f"train.batch_size={args.gpu_batch}",
            *(o for o in model.overrides if not (args.quick and o.startswith("model.width="))),  # quick: tiny
        )
        for workers in args.gpu_workers:
            for processes in args.gpu_processes:
                spec = Spec("mdgan", workers, overrides, threads=1, per_rank=workers // processes)
                runs = [runner(replace(spec, repeat=repeat)) for repeat in range(args.gpu_repeats)]
                walls = [run.wall for run in runs]
                peaks = [peak for run in runs if (peak := device_peak(run)) is not None]
                parts = where_time_goes(runs)  # overlap's reading of the same records
                rows.append(
                    {
                        "model": model.name,
                        "batch": args.gpu_batch,
                        "workers": workers,
                        "processes": processes,
                        "per_rank": workers // processes,
                        "wall_seconds": statistics.median(walls),
                        "wall_min": min(walls),
                        "wall_max": max(walls),
                        "server_seconds": parts["server_seconds"],
                        "worker_seconds": parts["worker_seconds"],
                        "device_peak": max(peaks) if peaks else None,
                    }
                )
    return Table(
        f"One device, several workers per process: iteration time vs N ({args.gpu_repeats} jobs each)",
        [
            keyed("model", "model"),
            keyed("batch", "b"),
            keyed("workers", "N"),
            keyed("processes", "worker processes"),
            keyed("per_rank", "W"),
            keyed("wall_seconds", "ms/iter (median)", ms),
            range_column("range", "range", "wall_min", "wall_max", ms),
            keyed("server_seconds", "server compute ms", ms),
            keyed("worker_seconds", "slowest worker process ms", ms),
            keyed("device_peak", "device peak MiB (largest process)", mib),
        ],
        rows,
        notes=[
            "Every rank on the one device, gloo between the processes. ms/iter: the median over the "
            "jobs of each job's median iteration time (first 10% dropped); range: the lowest and highest "
            "job median. Server compute: its generate and G step; slowest worker process: its D steps and "
            "feedback once the batches came. Random images of the model's shape (an image folder).",
        ],
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu-workers", type=int, nargs="+", default=None, help="N values of gpu (10 25 50)")
    parser.add_argument("--gpu-processes", type=int, nargs="+", default=None, help="worker processes of gpu (1)")
    parser.add_argument("--gpu-batch", type=int, default=None, help="b of gpu (100; quick 16)")
    parser.add_argument("--gpu-repeats", type=int, default=None, help="jobs per figure of gpu (2; quick 1)")


def resolve_arguments(args: argparse.Namespace) -> None:
    args.gpu_workers = args.gpu_workers or ([2] if args.quick else [10, 25, 50])
    args.gpu_processes = args.gpu_processes or [1]
    args.gpu_batch = args.gpu_batch or (16 if args.quick else 100)
    args.gpu_repeats = args.gpu_repeats or (1 if args.quick else 2)
    for workers in args.gpu_workers:
        for processes in args.gpu_processes:
            if workers % processes:
                raise SystemExit(f"--gpu-workers {workers} is not a multiple of --gpu-processes {processes}")
