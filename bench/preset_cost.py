"""What a whole experiment preset costs: each configuration's compute per iteration, measured here
with the roles' own compute objects, times its iterations, and the hours that makes.

    python bench/preset_cost.py paper_mnist_mlp paper_mnist_cnn paper_cifar10_cnn --json docs/preset-cost.json
    python bench/preset_cost.py paper_cifar10_cnn --device cuda     # the GPU columns

One iteration's compute: MD-GAN, the server's (k generated batches, N feedbacks) plus N workers';
FL-GAN, N whole GAN iterations (its averaging, once per epoch, is left out); standalone, one. Each
role's step runs in this process: on the CPU on one thread, timed by the thread's CPU time (so other
work on the machine does not inflate it); with --device cuda on the GPU, by wall clock. Estimates:
- these CPU cores: the configurations one after the other, each at its compute bound (the compute
  spread over the cores; docs/benchmarks.md measures real jobs at 1.0-1.8x of it);
- one GPU: the same, every rank on the GPU and nothing overlapped (an upper bound on compute, and
  no transfer or launch overhead counted);
- a SLURM cluster of 8 GPUs: the one-GPU total over 8, the configurations being independent jobs.
No dataset is read: a shard of random images of the dataset's shape costs the same compute.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mdgan_dist.algorithms.local import LocalGAN
from mdgan_dist.compose import compose
from mdgan_dist.config import Config
from mdgan_dist.experiments.formatting import duration, one_decimal
from mdgan_dist.experiments.grid import Configuration, load_preset
from mdgan_dist.experiments.tables import keyed, render_table
from mdgan_dist.seeding import generator as noise_stream
from sections.role_compute import server_step, worker_step
from sections.timing import median_seconds

# The image shape of each dataset the presets name, and its classes: all the compute depends on.
SHAPES = {"mnist": (1, 28, 28), "mnist5k": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
CLASSES = 10
SHARD = 512  # random images per shard: enough for any batch of the presets
CLUSTER_GPUS = 8


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="+", help="preset names in conf/experiment/ or preset files")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repetitions", type=int, default=5, help="timed steps per role (median)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="CPU cores of the bound")
    parser.add_argument("--json", type=Path, default=None, help="write the rows and totals here")
    return parser.parse_args(argv)


class RoleTimer:
    """Seconds of one step of each role, measured once per (model, batch size, role)."""

    def __init__(self, device: torch.device, repetitions: int) -> None:
        self.device, self.repetitions = device, repetitions
        self.measured: dict[tuple, float] = {}

    def seconds(self, cfg: Config, role: str, k: int = 0, workers: int = 0) -> float:
        key = (cfg.model.name, cfg.data.name, cfg.train.batch_size, cfg.gan.disc_steps, role, k, workers)
        if key not in self.measured:
            self.measured[key] = median_seconds(self.step(cfg, role, k, workers), self.repetitions, self.clock)
        return self.measured[key]

    def step(self, cfg: Config, role: str, k: int, workers: int) -> Callable[[], None]:
        shape = SHAPES[cfg.data.name]
        shard = (torch.rand(SHARD, *shape) * 2 - 1, torch.randint(CLASSES, (SHARD,)))
        if role == "mdgan_server":
            return server_step(cfg, shape, CLASSES, k, self.device, workers)
        if role == "mdgan_worker":
            return worker_step(cfg, shape, CLASSES, shard, 1, self.device)
        local = LocalGAN(cfg, shape, CLASSES, shard, 0, noise_stream(cfg.train.seed, "noise", 0), self.device)
        return lambda: local.iteration(0)  # the iteration only names a non-finite value in its error

    def clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.thread_time()


def iteration_seconds(timer: RoleTimer, cfg: Config, configuration: Configuration) -> float:
    """One iteration's compute of the whole configuration, every role's share added up."""
    workers = configuration.workers or 1
    if configuration.algorithm == "standalone":
        return timer.seconds(cfg, "local_gan")
    if configuration.algorithm == "flgan":
        return workers * timer.seconds(cfg, "local_gan")
    assert configuration.k is not None
    return timer.seconds(cfg, "mdgan_server", configuration.k, workers) + workers * timer.seconds(cfg, "mdgan_worker")


def cost_rows(preset_name: str, timer: RoleTimer, cores: int, on_gpu: bool) -> list[dict]:
    preset = load_preset(preset_name)
    rows = []
    for configuration in preset.configurations:
        cfg = compose([*preset.overrides, *configuration.overrides(), f"train.device={timer.device.type}"])
        seconds = iteration_seconds(timer, cfg, configuration)
        hours = cfg.train.iterations * seconds / 3600
        rows.append(
            {
                "preset": preset.name,
                "configuration": configuration.name,
                "iterations": cfg.train.iterations,
                "compute_seconds": seconds,
                # On the CPU the compute spreads over the cores; one GPU runs it all.
                "iterations_per_second": (1 if on_gpu else cores) / seconds,
                "hours_here": None if on_gpu else hours / cores,
                "hours_one_gpu": hours if on_gpu else None,
                "hours_cluster": hours / CLUSTER_GPUS if on_gpu else None,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    on_gpu = args.device == "cuda"
    if on_gpu and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU visible to torch")
    torch.set_num_threads(1)  # one role's compute on one core, as in a job with a process per core
    timer = RoleTimer(torch.device(args.device), args.repetitions)
    rows = [row for preset in args.presets for row in cost_rows(preset, timer, args.cores, on_gpu)]
    totals = []
    for preset in dict.fromkeys(row["preset"] for row in rows):
        members = [row for row in rows if row["preset"] == preset]
        total = {key: sum(row[key] for row in members) if members[0][key] is not None else None for key in HOURS}
        totals.append({"preset": preset, "configuration": f"all {len(members)}", **total})
    where = "one GPU" if on_gpu else f"{args.cores} CPU cores"
    shown = {key for key in HOURS if rows[0][key] is not None}
    columns = [
        keyed("configuration", "configuration"),
        keyed("iterations", "iterations", lambda value: f"{value:,}"),
        keyed("compute_seconds", "compute per iteration (s)", lambda value: f"{value:.4f}"),
        keyed("iterations_per_second", f"iterations/s, {where}", one_decimal),
        *(keyed(key, title, lambda value: duration(value * 3600)) for key, title in HOURS.items() if key in shown),
    ]
    for total in totals:
        members = [row for row in rows if row["preset"] == total["preset"]]
        print(f"\n{total['preset']} ({where}):\n")
        print("\n".join(render_table(columns, [*members, total])))
    if args.json:
        device = torch.cuda.get_device_name() if on_gpu else f"{args.cores} CPU cores"
        settings = {"device": device, "repetitions": args.repetitions, "torch": torch.__version__}
        args.json.write_text(json.dumps({"settings": settings, "rows": rows, "totals": totals}, indent=2) + "\n")


HOURS = {
    "hours_here": "whole run, these cores",
    "hours_one_gpu": "whole run, one GPU",
    "hours_cluster": f"whole run, {CLUSTER_GPUS} GPUs",
}


if __name__ == "__main__":
    main()
