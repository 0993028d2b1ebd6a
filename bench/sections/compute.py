"""Section compute: per-worker compute of one iteration, MD-GAN vs FL-GAN, in this process on one
thread (CPU seconds and FLOPs; on --device cuda also GPU wall time)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from jobs import Runner
from mdgan_dist.compose import compose
from mdgan_dist.experiments.formatting import ms, ratio
from mdgan_dist.experiments.tables import keyed
from mdgan_dist.resources import one_intra_op_thread

from .role_compute import compute_steps
from .table import Table
from .timing import median_seconds


class WholeProgram:
    """Stands in for FlopCounterMode's ModuleTracker: every FLOP counts towards "Global" only."""

    parents = frozenset({"Global"})

    def __enter__(self) -> WholeProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def count_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call as FlopCounterMode counts them: matmuls and convolutions, forward and
    backward (element-wise work and the optimizer's update are not counted).

    Without the per-module breakdown: its ModuleTracker puts backward hooks on module inputs, which
    torch.autograd.grad with respect to an input refuses ("A leaf node was passed to
    _will_engine_execute_node"), and that is exactly how a worker computes the feedback."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = WholeProgram()  # type: ignore[assignment]
    with counter:
        step()
    return counter.get_total_flops()


def section_compute(args: argparse.Namespace, runner: Runner) -> Table:
    cfg = compose(runner.shared_overrides())
    with one_intra_op_thread():  # per-process compute, as one worker process of a job on its own core
        cpu = torch.device("cpu")
        steps = compute_steps(cfg, args.workers, cpu)
        flops = {name: count_flops(step) for name, step in steps.items()}
        seconds = {name: median_seconds(step, args.repetitions, time.thread_time) for name, step in steps.items()}
        gpu_seconds: dict[str, float] = {}
        if args.device == "cuda":
            # The same iterations on the GPU, by wall clock (CPU time says nothing there).
            def synced() -> float:
                torch.cuda.synchronize()
                return time.perf_counter()

            cuda_steps = compute_steps(cfg, args.workers, torch.device("cuda"))
            gpu_seconds = {name: median_seconds(s, args.repetitions, synced) for name, s in cuda_steps.items()}
    base_cpu, base_flops = seconds["flgan_worker"], flops["flgan_worker"]
    roles = {"mdgan_worker": "MD-GAN worker (D steps + feedback)", "flgan_worker": "FL-GAN worker = standalone"}
    rows = []
    for name in steps:
        role = roles.get(name) or f"MD-GAN server, k={name.rsplit('k', 1)[1]} (generate + G backward + Adam)"
        rows.append(
            {
                "role": role,
                "name": name,
                "cpu_seconds": seconds[name],
                "flops": flops[name],
                "cpu_vs_flgan": seconds[name] / base_cpu,
                "flops_vs_flgan": flops[name] / base_flops,
                "cuda_seconds": gpu_seconds.get(name),
            }
        )
    columns = [
        keyed("role", "role"),
        keyed("cpu_seconds", "CPU ms/iter", ms),
        keyed("flops", "MFLOPs/iter", lambda f: f"{f / 1e6:,.1f}"),
        keyed("cpu_vs_flgan", "CPU time / FL-GAN", ratio),
        keyed("flops_vs_flgan", "FLOPs / FL-GAN", ratio),
    ]
    if gpu_seconds:
        columns.append(keyed("cuda_seconds", "CUDA wall ms/iter", ms))
    md_cpu, md_flops = rows[0]["cpu_vs_flgan"], rows[0]["flops_vs_flgan"]
    return Table(
        "Per-worker compute per iteration, MD-GAN vs FL-GAN",
        columns,
        rows,
        notes=[
            f"In one process, one thread (torch.set_num_threads(1)), {cfg.model.name} width {cfg.model.width:g}, "
            f"b = {cfg.train.batch_size}, L = {cfg.gan.disc_steps}; CPU time (time.thread_time) is the median of "
            f"{args.repetitions} iterations after warm-up; FLOPs by torch.utils.flop_counter.FlopCounterMode "
            "(matmuls and convolutions, forward and backward; not element-wise ops nor Adam's update).",
            f"MD-GAN worker / FL-GAN worker: {md_cpu:.3f} in CPU time, {md_flops:.3f} in FLOPs "
            "(the paper says about 0.5: a worker no longer runs G). The server rows are for context.",
        ],
        summary={"mdgan_over_flgan_cpu": md_cpu, "mdgan_over_flgan_flops": md_flops},
    )
