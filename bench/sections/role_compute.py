"""One iteration of each role's compute, in this process, for the compute section: the roles'
own compute objects (algorithms/mdgan/compute.py, algorithms/local.py), called as the roles call
them, without the wire."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from mdgan_dist.algorithms.local import LocalGAN
from mdgan_dist.algorithms.mdgan.compute import DiscriminatorCompute, GeneratorCompute
from mdgan_dist.algorithms.mdgan.schedule import feedback_batch
from mdgan_dist.config import Config, resolved_k
from mdgan_dist.data import load_shard
from mdgan_dist.job import plan_data
from mdgan_dist.seeding import generator as noise_stream


def compute_steps(cfg: Config, workers: list[int], device: torch.device) -> dict[str, Callable[[], None]]:
    """One iteration of each role: an MD-GAN worker, an FL-GAN worker, and the MD-GAN server for
    every k the worker counts resolve to."""
    plan = plan_data(cfg, 1)  # one shard, the whole train split: the shard size costs no compute
    shape, classes = plan.image_shape, plan.num_classes
    shard = load_shard(plan.train, plan.shards[0])

    # MD-GAN worker: its D steps on X_d and its feedback on X_g. The two batches are the
    # generator's, made once (a worker receives them, it does not make them).
    worker = DiscriminatorCompute(cfg, shape, classes, shard, 0, device)
    with torch.no_grad():
        received = GeneratorCompute(cfg, shape, classes, 2, device).generate()

    def mdgan_worker() -> None:
        worker.iteration(received.batches, received.labels)

    # FL-GAN worker (and the standalone GAN): a whole GAN's iteration.
    local = LocalGAN(cfg, shape, classes, shard, 0, noise_stream(cfg.train.seed, "noise", 0), device)

    def flgan_worker() -> None:
        local.iteration()

    steps = {"mdgan_worker": mdgan_worker, "flgan_worker": flgan_worker}
    for n in sorted({resolved_k(cfg.mdgan, n) for n in workers}):
        steps[f"mdgan_server_k{n}"] = server_step(cfg, shape, classes, n, device)
    return steps


def server_step(cfg: Config, shape: tuple[int, int, int], classes: int, k: int, device: torch.device) -> Callable:
    """The MD-GAN server's compute of one iteration with k batches: generate, aggregate, G step,
    the moving average. The feedback is a fixed tensor per batch (what arrives does not change
    the cost)."""
    server = GeneratorCompute(cfg, shape, classes, k, device)
    batch = cfg.train.batch_size
    feedbacks = [torch.randn(batch, *shape, device=device) * 1e-3 for _ in range(k)]
    batch_of = [feedback_batch(n, k) for n in range(k)]
    done = itertools.count(1)

    def step() -> None:
        server.step(server.generate(), feedbacks, batch_of, next(done))

    return step
