"""One iteration of each role's compute, in this process, for the compute section: the roles'
own compute objects (algorithms/mdgan/compute.py, algorithms/local.py), called as the roles call
them, without the wire."""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mdgan_dist.algorithms.aggregation import Judgements
from mdgan_dist.algorithms.local import LocalGAN
from mdgan_dist.algorithms.mdgan.compute import GeneratorCompute
from mdgan_dist.algorithms.mdgan.discriminators import DiscriminatorCompute
from mdgan_dist.algorithms.mdgan.schedule import feedback_batch
from mdgan_dist.compose import compose
from mdgan_dist.config import Config, resolved_k
from mdgan_dist.data import load_shard
from mdgan_dist.job import plan_data
from mdgan_dist.resources import one_intra_op_thread
from mdgan_dist.seeding import generator as noise_stream

from .timing import median_seconds

CONTENDED_TIMEOUT_S = 600.0  # a child that builds or times for longer has failed
CHILD_EXIT_S = 30.0


Shard = tuple[torch.Tensor, torch.Tensor]  # images and labels


def one_shard(cfg: Config) -> tuple[tuple[int, int, int], int, Shard]:
    """The image shape, the class count and one shard: the whole train split (a shard's size
    costs no compute)."""
    plan = plan_data(cfg, 1)
    return plan.image_shape, plan.num_classes, load_shard(plan.train, plan.shards[0])


def compute_steps(cfg: Config, workers: list[int], device: torch.device) -> dict[str, Callable[[], None]]:
    """One iteration of each role: an MD-GAN worker, an FL-GAN worker, and the MD-GAN server for
    every k the worker counts resolve to."""
    shape, classes, shard = one_shard(cfg)

    mdgan_worker = worker_step(cfg, shape, classes, shard, 1, device)

    # FL-GAN worker (and the standalone GAN): a whole GAN's iteration.
    local = LocalGAN(cfg, shape, classes, shard, 0, noise_stream(cfg.train.seed, "noise", 0), device)

    def flgan_worker() -> None:
        local.iteration(0)  # the iteration only names a non-finite value in its error

    steps = {"mdgan_worker": mdgan_worker, "flgan_worker": flgan_worker}
    for n in sorted({resolved_k(cfg.mdgan, n) for n in workers}):
        steps[f"mdgan_server_k{n}"] = server_step(cfg, shape, classes, n, device)
    return steps


def server_step(
    cfg: Config, shape: tuple[int, int, int], classes: int, k: int, device: torch.device, workers: int | None = None
) -> Callable[[], None]:
    """The MD-GAN server's compute of one iteration with k batches and the feedback of `workers`
    workers (default k): generate, aggregate, G step, the moving average. The feedback is a fixed
    tensor per worker (what arrives does not change the cost)."""
    server = GeneratorCompute(cfg, shape, classes, k, device)
    batch, workers = cfg.train.batch_size, workers or k
    feedbacks = [torch.randn(batch, *shape, device=device) * 1e-3 for _ in range(workers)]
    batch_of = [feedback_batch(n, k) for n in range(workers)]
    done = itertools.count(1)

    def step() -> None:
        generated = server.generate()
        server.step(generated, Judgements(feedbacks, batch_of, k, generated.labels), next(done))

    return step


def worker_step(
    cfg: Config,
    shape: tuple[int, int, int],
    classes: int,
    shard: tuple[torch.Tensor, torch.Tensor],
    per_rank: int,
    device: torch.device,
    noise_multiplier: float | None = None,
) -> Callable[[], None]:
    """One MD-GAN worker process's iteration with `per_rank` workers (their D steps on X_d and
    feedback on X_g, batched; by DP-SGD with this noise multiplier when privacy.* is on). Its batches
    are the generator's, made once (a worker receives them, it does not make them); every worker
    trains on the same shard (its size costs no compute)."""
    worker = DiscriminatorCompute(
        cfg, shape, classes, [shard] * per_rank, list(range(per_rank)), device, noise_multiplier=noise_multiplier
    )
    with torch.no_grad():
        received = GeneratorCompute(cfg, shape, classes, 2, device).generate()
    # W x 2 x b x ... in one block, as they arrive in the packet.
    samples = received.batches.expand(per_rank, *received.batches.shape).contiguous()
    labels = None if received.labels is None else received.labels.expand(per_rank, *received.labels.shape).contiguous()

    def step() -> None:
        worker.iteration(samples, labels, 0)

    return step


@dataclass(frozen=True)
class Bound:
    """A job's compute per iteration, timed on one thread: the server's generate and G step, and
    one worker process's iteration (each the median of the repetitions)."""

    server: float
    worker: float
    processes: int  # worker processes
    cores: int

    @property
    def seconds(self) -> float:
        """The compute bound: seconds per iteration if that compute were spread over every core."""
        return (self.server + self.processes * self.worker) / self.cores


def compute_bound(overrides: list[str], workers: int, per_rank: int, repetitions: int, cores: int) -> Bound:
    """The compute of a job of `workers` workers, `per_rank` a process, timed in this process."""
    cfg = compose(overrides)
    with one_intra_op_thread():
        shape, classes, shard = one_shard(cfg)
        cpu = torch.device("cpu")
        server = server_step(cfg, shape, classes, resolved_k(cfg.mdgan, workers), cpu, workers)
        worker = worker_step(cfg, shape, classes, shard, per_rank, cpu)
        server_seconds = median_seconds(server, repetitions, time.thread_time)
        worker_seconds = median_seconds(worker, repetitions, time.thread_time)
    return Bound(server_seconds, worker_seconds, workers // per_rank, cores)


def _time_worker_step(overrides: list[str], per_rank: int, repetitions: int, start: Any, out: Any) -> None:
    """In a process of its own: one worker process's iteration, built, then timed once every
    process of contended_worker_seconds is ready."""
    cfg = compose(overrides)
    with one_intra_op_thread():
        worker = worker_step(cfg, *one_shard(cfg), per_rank, torch.device("cpu"))
        start.wait(timeout=CONTENDED_TIMEOUT_S)  # a sibling that failed to build breaks the barrier
        out.put(median_seconds(worker, repetitions, time.thread_time))


def contended_worker_seconds(overrides: list[str], per_rank: int, repetitions: int, processes: int) -> list[float]:
    """One worker process's iteration timed in `processes` processes at once, one thread each: what
    a core delivers while every core is busy (shared caches and memory bandwidth, and on a virtual
    machine whatever the host shares). Each process's median CPU seconds."""
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(processes), context.Queue()
    children = [
        context.Process(target=_time_worker_step, args=(overrides, per_rank, repetitions, start, out))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    try:
        return [gathered(out, children) for _ in children]
    finally:
        for child in children:
            child.join(timeout=CHILD_EXIT_S)  # each ends once it has put its figure
            if child.is_alive():
                child.kill()
                child.join()


def gathered(out: Any, children: list[Any]) -> float:
    """The next figure a child of contended_worker_seconds puts; an error naming the failure when a
    child died or none answered within CONTENDED_TIMEOUT_S."""
    deadline = time.monotonic() + CONTENDED_TIMEOUT_S
    while True:
        try:
            return float(out.get(timeout=1.0))
        except queue.Empty:
            failed = [child.exitcode for child in children if child.exitcode not in (None, 0)]
            if failed:
                raise RuntimeError(
                    f"a process timing the worker step ended with exit code {failed[0]}; its error is above"
                ) from None
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the processes timing the worker step gave no figure in {CONTENDED_TIMEOUT_S:.0f} s"
                ) from None
