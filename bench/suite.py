"""MD-GAN's speed, side by side, in one run: markdown tables for docs/benchmarks.md and one JSON file.

    python bench/suite.py                                # every section, defaults (make bench)
    python bench/suite.py --quick --json out.json        # tiny models, few iterations (the test)
    python bench/suite.py --device cuda -- model=mnist_cnn
    python bench/suite.py --sections compute protocol bytes --iterations 300
    python bench/suite.py --before 629e071               # also that git ref's trainer, before/after

Every distributed figure comes from real jobs of the project's trainer (`python -m
torch.distributed.run --nproc_per_node=N+1 -m mdgan_dist.train`, the standalone GAN as one plain
`python -m mdgan_dist.train algorithm=standalone`), read back from their metrics.jsonl and
stats_rank*.json. Only the per-worker compute comparison runs in this process, on the same step
functions the workers call. Timings are medians after dropping the first 10% of iterations
(warm-up); byte figures are compared with the paper's analytic formulas and must match exactly.

Sections (each one table and one JSON entry):
  compute      per-worker compute of one iteration, MD-GAN vs FL-GAN (CPU seconds, FLOPs)
  protocol     price of the protocol: MD-GAN N=1 vs the standalone GAN, wall per iteration
  scaling      iteration time vs N and where it goes
  bytes        measured bytes vs the analytic figures (per iteration, per swap, per FL-GAN sync)
  memory       peak RSS (and CUDA peak) of the server, the largest worker, FL-GAN, standalone
  optimisations  before/after: wire dtype, overlap, straggler with quorum, (cuda) bf16/channels_last

Extra Hydra overrides after `--` go to every job (and to the in-process models); a section's own
settings win over them for the knob it compares.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mdgan_dist.algorithms.components import (
    label_classes,
    make_augment,
    make_discriminator,
    make_generator,
    make_sampler,
)
from mdgan_dist.algorithms.flgan.averaging import model_tensors
from mdgan_dist.algorithms.local import LocalGAN
from mdgan_dist.algorithms.mdgan.schedule import feedback_batch
from mdgan_dist.algorithms.steps import (
    aggregate_feedback,
    discriminator_adam,
    generate,
    generator_adam,
    generator_feedback,
    generator_step,
    sample_latent,
    train_discriminator,
)
from mdgan_dist.config import Config, resolved_k
from mdgan_dist.config import load as load_config
from mdgan_dist.data import load_shard, open_dataset
from mdgan_dist.distributed.protocol import HEADER_LEN
from mdgan_dist.job import plan_data
from mdgan_dist.seeding import generator as noise_stream

WARM_UP = 0.1  # fraction of every run's first iterations left out of every median
QUICK = ["model.width=0.0625", "train.batch_size=16"]  # the test's size: seconds per job on 2 cores
STRAGGLER_SECONDS = 0.05
HEADER_BYTES = HEADER_LEN * 8  # every message starts with an int64 header
FLOAT32_BYTES = 4  # swaps and FL-GAN syncs always travel as float32 (flat_state.flatten)
SECTIONS = ("compute", "protocol", "scaling", "bytes", "memory", "optimisations")
MIB = 2**20


# --------------------------------------------------------------------------------------------
# Jobs: one runner for every section, each distinct job run once and shared.


@dataclass(frozen=True)
class Spec:
    """One training job: what a section asks for. threads=None keeps the trainer's default."""

    algorithm: str  # mdgan | flgan | standalone
    workers: int  # N; 0 for standalone
    overrides: tuple[str, ...] = ()
    threads: int | None = 1
    source: Path | None = None  # another tree's src/ to run (--before), instead of this one's


@dataclass
class Result:
    spec: Spec
    overrides: list[str]  # the job's full command-line overrides
    cfg: Config
    records: list[dict[str, Any]]  # metrics.jsonl, one per iteration
    stats: dict[int, dict[str, Any]]  # stats_rank{r}.json by rank
    job_seconds: float  # wall time of the whole command, start-up included
    threads: int | None  # intra-op threads the server (or the one process) says it used

    @property
    def warm(self) -> list[dict[str, Any]]:
        """The records after the warm-up (the first 10%: allocation, caches, connections)."""
        return self.records[int(len(self.records) * WARM_UP) :]

    def median(self, key: str | Callable[[dict[str, Any]], float]) -> float:
        value = key if callable(key) else (lambda record: record[key])
        return statistics.median(value(record) for record in self.warm)

    def mean(self, key: str) -> float:
        return statistics.fmean(record[key] for record in self.warm)

    @property
    def wall(self) -> float:
        return self.median("iteration_seconds")

    @property
    def worker_stats(self) -> list[dict[str, Any]]:
        return [stats for rank, stats in sorted(self.stats.items()) if rank > 0]

    def steady_bytes(self) -> int:
        """Server bytes (sent + received) of one iteration away from any control message: the
        middle record of a run without swaps or checkpoints (the first one carries the bare
        header announced after the handshake)."""
        record = self.records[len(self.records) // 2]
        return record["server_bytes_sent"] + record["server_bytes_recv"]


def merge(*groups: Iterable[str]) -> list[str]:
    """Hydra overrides with one value per key, the later winning (as Hydra would): short command
    lines, and one cache key for one configuration however the sections spell it."""
    merged: dict[str, str] = {}
    for group in groups:
        for override in group:
            merged[override.split("=", 1)[0].lstrip("+~")] = override
    return list(merged.values())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Runner:
    """Runs jobs of the real trainer in a scratch folder and reads back what they wrote."""

    def __init__(self, iterations: int, base: list[str], extra: list[str], scratch: Path, timeout_s: float) -> None:
        self.iterations = iterations
        self.base = base
        self.extra = extra
        self.scratch = scratch
        self.timeout_s = timeout_s
        self.results: dict[tuple[str, int, tuple[str, ...], Path | None], Result] = {}

    def overrides(self, spec: Spec) -> list[str]:
        common = [
            f"algorithm={spec.algorithm}",
            f"train.iterations={self.iterations}",
            "log.every=1",  # one record per iteration: medians over iterations
            "log.progress=false",
            f"log.sample_every={self.iterations}",  # one sample grid, at the end
            "eval.every=0",  # scoring is not what this measures
            "checkpoint.every=0",  # no control messages but the ones a section asks for
        ]
        if spec.algorithm == "mdgan":
            common.append("mdgan.swap_every_epochs=0")  # swaps only where a section turns them on
        if spec.threads is not None:
            common.append(f"train.threads={spec.threads}")
        return merge(common, self.base, self.extra, spec.overrides)

    def __call__(self, spec: Spec) -> Result:
        overrides = self.overrides(spec)
        key = (spec.algorithm, spec.workers, tuple(sorted(overrides)), spec.source)
        if key not in self.results:
            self.results[key] = self.run(spec, overrides)
        return self.results[key]

    def run(self, spec: Spec, overrides: list[str]) -> Result:
        run_dir = self.scratch / f"{len(self.results):02d}-{spec.algorithm}-n{spec.workers}"
        run_dir.mkdir(parents=True)
        if spec.algorithm == "standalone":
            launcher = [sys.executable, "-m", "mdgan_dist.train"]
        else:
            launcher = [
                *(sys.executable, "-m", "torch.distributed.run"),
                f"--nproc_per_node={spec.workers + 1}",
                f"--master-port={free_port()}",
                *("-m", "mdgan_dist.train"),
            ]
        command = [*launcher, *overrides, f"run.dir={run_dir}"]
        print(f"[bench] {spec.algorithm} N={spec.workers}: {' '.join(overrides)}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        log = run_dir / "job.log"
        env = dict(os.environ, PYTHONPATH=str(spec.source)) if spec.source else None
        with log.open("w") as output:
            # cwd: Hydra writes nothing outside run.dir, but keep the repository clean regardless.
            done = subprocess.run(
                command,
                cwd=run_dir,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=self.timeout_s,
                check=False,
            )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"job failed ({done.returncode}): {' '.join(command)}\n{tail}")
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
        records = [record for record in records if "iteration_seconds" in record]  # not score records
        stats = {}
        for path in run_dir.glob("stats_rank*.json"):
            entry = json.loads(path.read_text())
            stats[entry["rank"]] = entry
        cfg = load_config(run_dir / "config.yaml")
        # train.py logs the threads it chose: the only way to know the default's value.
        threads = re.search(r"(\d+) intra-op threads per process", log.read_text(errors="replace"))
        return Result(spec, overrides, cfg, records, stats, seconds, threads and int(threads.group(1)))


# --------------------------------------------------------------------------------------------
# Tables: every section returns one, rendered as markdown and stored as JSON.


@dataclass
class Column:
    key: str
    title: str
    fmt: Callable[[Any], str] = str


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # headline figures, in the JSON only

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines += ["| " + " | ".join(c.title for c in self.columns) + " |", "|" + "---|" * len(self.columns)]
        for row in self.rows:
            cells = [("" if row.get(c.key) is None else c.fmt(row[c.key])) for c in self.columns]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join([*lines, "", *self.notes]).rstrip() + "\n"

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "rows": self.rows, "notes": self.notes, **self.summary}


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def ratio(value: float) -> str:
    return f"{value:.3f}"


def integer(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def mib(value: int) -> str:
    return f"{value / MIB:.1f}"


def exact_ratio(value: float) -> str:
    return f"{value:.6f}"


# --------------------------------------------------------------------------------------------
# Section 1: per-worker compute, in this process, one thread.


def compose_config(overrides: list[str]) -> Config:
    """The config a job with these overrides would train with (Hydra groups such as model=... included)."""
    from hydra import compose, initialize_config_dir

    from mdgan_dist.train import CONF_DIR, typed_config

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return typed_config(compose("config", overrides=overrides))


def median_seconds(step: Callable[[], None], repetitions: int, clock: Callable[[], float]) -> float:
    """Median seconds of `step` by `clock`, after a warm-up of 10% of the repetitions (at least 2)."""
    for _ in range(max(2, int(repetitions * WARM_UP))):
        step()
    times = []
    for _ in range(repetitions):
        started = clock()
        step()
        times.append(clock() - started)
    return statistics.median(times)


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


def compute_steps(cfg: Config, workers: list[int], device: torch.device) -> dict[str, Callable[[], None]]:
    """One iteration of each role, built from the components and steps the trainer uses."""
    plan = plan_data(cfg, 1)  # one shard, the whole train split: the shard size costs no compute
    shape, classes, batch = plan.image_shape, plan.num_classes, cfg.train.batch_size
    shard = load_shard(plan.train, plan.shards[0])
    conditional = label_classes(cfg, classes)
    noise = noise_stream(cfg.train.seed, "noise")

    # MD-GAN worker: L D-steps on X_d, then the feedback on X_g, as worker.py calls them. The
    # batches are the generator's, made once (the worker receives them, it does not make them).
    discriminator = make_discriminator(cfg, shape, classes, 0).to(device)
    d_optimizer = discriminator_adam(discriminator, cfg.optim)
    sampler = make_sampler(cfg, shard[0].to(device), shard[1].to(device), 0)
    augment = make_augment(cfg, 0)
    g = make_generator(cfg, shape, classes).to(device)
    with torch.no_grad():
        z, labels = sample_latent(noise, 2 * batch, cfg.model.z_dim, conditional)
        labels = None if labels is None else labels.to(device).view(2, batch)
        received = generate(g, z.to(device), None if labels is None else labels.view(-1), classes)
    received = received.view(2, batch, *shape)

    def label(row: int) -> torch.Tensor | None:
        return None if labels is None else labels[row]

    def mdgan_worker() -> None:
        train_discriminator(discriminator, d_optimizer, sampler, (received[0], label(0)), cfg.gan, augment)
        generator_feedback(discriminator, received[1], cfg.gan, label(1), augment)

    # FL-GAN worker (and the standalone GAN): a whole GAN's iteration.
    local = LocalGAN(cfg, shape, classes, shard, 0, noise_stream(cfg.train.seed, "noise", 0), device)

    def flgan_worker() -> None:
        local.iteration()

    steps = {"mdgan_worker": mdgan_worker, "flgan_worker": flgan_worker}
    for n in sorted({resolved_k(cfg.mdgan, n) for n in workers}):
        steps[f"mdgan_server_k{n}"] = server_step(cfg, shape, classes, n, device)
    return steps


def server_step(cfg: Config, shape: tuple[int, int, int], classes: int, k: int, device: torch.device) -> Callable:
    """The MD-GAN server's compute of one iteration with k batches: generate, aggregate, G step.
    The feedback is a fixed tensor per batch (what arrives does not change the cost)."""
    g = make_generator(cfg, shape, classes).to(device)
    optimizer = generator_adam(g, cfg.optim)
    noise, batch = noise_stream(cfg.train.seed, "noise"), cfg.train.batch_size
    feedbacks = [torch.randn(batch, *shape, device=device) * 1e-3 for _ in range(k)]
    assignment = [feedback_batch(n, k) for n in range(k)]

    def step() -> None:
        z, labels = sample_latent(noise, k * batch, cfg.model.z_dim, label_classes(cfg, classes))
        labels = None if labels is None else labels.to(device)
        generated = generate(g, z.to(device), labels, classes).view(k, batch, *shape)
        generator_step(optimizer, generated, aggregate_feedback(feedbacks, assignment, k))

    return step


def section_compute(args: argparse.Namespace, runner: Runner) -> Table:
    cfg = compose_config(merge(runner.base, runner.extra))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per-process compute, as one worker process of a job on its own core
    try:
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
    finally:
        torch.set_num_threads(threads)
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
        Column("role", "role"),
        Column("cpu_seconds", "CPU ms/iter", ms),
        Column("flops", "MFLOPs/iter", lambda f: f"{f / 1e6:,.1f}"),
        Column("cpu_vs_flgan", "CPU time / FL-GAN", ratio),
        Column("flops_vs_flgan", "FLOPs / FL-GAN", ratio),
    ]
    if gpu_seconds:
        columns.append(Column("cuda_seconds", "CUDA wall ms/iter", ms))
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


# --------------------------------------------------------------------------------------------
# Section 2: price of the protocol, MD-GAN N=1 vs standalone.


def section_protocol(args: argparse.Namespace, runner: Runner) -> Table:
    runs = [
        ("standalone, train.threads=1", runner(Spec("standalone", 0))),
        ("MD-GAN N=1, train.threads=1", runner(Spec("mdgan", 1))),
        ("MD-GAN N=1, mdgan.overlap=true", runner(Spec("mdgan", 1, ("mdgan.overlap=true",)))),
        ("standalone, default threads (information)", runner(Spec("standalone", 0, threads=None))),
    ]
    baseline = runs[0][1].wall
    rows = [
        {
            "run": name,
            "threads": run.threads,
            "threads_setting": run.cfg.train.threads or "default",
            "wall_seconds": run.wall,
            "iterations_per_second": 1 / run.wall,
            "vs_standalone": run.wall / baseline,
        }
        for name, run in runs
    ]
    price = rows[1]["vs_standalone"]
    return Table(
        "Price of the protocol: MD-GAN N=1 vs the standalone GAN",
        [
            Column("run", "run"),
            Column("threads_setting", "train.threads"),
            Column("threads", "threads used"),
            Column("wall_seconds", "wall ms/iter", ms),
            Column("iterations_per_second", "it/s", lambda v: f"{v:.1f}"),
            Column("vs_standalone", "/ standalone", ratio),
        ],
        rows,
        notes=[
            "Median of iteration_seconds, first 10% of iterations dropped. Both sides run train.threads=1: "
            "MD-GAN's server and worker take turns (G, then D, then G), so one thread per process is the "
            "fair match for the one-process GAN (on a 2-core box the two share the cores); the last row is the standalone GAN with the "
            "trainer's default threads (all cores for its one process), for information.",
            f"MD-GAN N=1 / standalone = {price:.3f} (goal: at most 1.10).",
        ],
        summary={"mdgan_over_standalone": price, "overlap_over_standalone": rows[2]["vs_standalone"]},
    )


# --------------------------------------------------------------------------------------------
# Section 3: iteration time vs N, and where it goes.


def transport_idle(record: dict[str, Any]) -> float:
    """Server waiting time not explained by the slowest worker's compute: messages and scheduling."""
    return max(record["time_wait"] - record["time_worker_max"], 0.0)


def server_other(record: dict[str, Any]) -> float:
    """The rest of the server's iteration: posting the sends, header checks, bookkeeping."""
    return record["iteration_seconds"] - record["time_generate"] - record["time_wait"] - record["time_backward"]


def section_scaling(args: argparse.Namespace, runner: Runner) -> Table:
    rows = []
    for n in args.workers:
        run = runner(Spec("mdgan", n))
        rows.append(
            {
                "workers": n,
                "k": resolved_k(run.cfg.mdgan, n),
                "wall_seconds": run.wall,
                "iterations_per_second": 1 / run.wall,
                "generate": run.median("time_generate"),
                "backward": run.median("time_backward"),
                "worker_d": run.median("time_worker_d"),
                "worker_feedback": run.median("time_worker_feedback"),
                "wait": run.median("time_wait"),
                "transport_idle": run.median(transport_idle),
                "server_other": run.median(server_other),
            }
        )
    cores, most = os.cpu_count() or 1, max(args.workers) + 1
    if most > cores:
        load = (
            f"Up to {most} processes share {cores} cores: the machine is oversubscribed, and the wall time "
            "grows with N for lack of cores, not because of the protocol."
        )
    else:
        load = f"At most {most} processes on {cores} cores: one core each at least."
    return Table(
        "Iteration time vs N (swaps off)",
        [
            Column("workers", "N"),
            Column("k", "k"),
            Column("wall_seconds", "wall ms/iter", ms),
            Column("iterations_per_second", "it/s", lambda v: f"{v:.1f}"),
            Column("generate", "server generate", ms),
            Column("backward", "server backward+step", ms),
            Column("worker_d", "worker D steps", ms),
            Column("worker_feedback", "worker feedback", ms),
            Column("wait", "server wait", ms),
            Column("transport_idle", "transport+idle", ms),
            Column("server_other", "server other", ms),
        ],
        rows,
        notes=[
            "Milliseconds, medians over iterations (first 10% dropped), each column its own median. "
            "Worker columns are the mean over workers of one iteration; transport+idle = "
            "max(server wait - slowest worker's D steps + feedback, 0); server other = wall - generate - "
            "wait - backward.",
            load,
        ],
    )


# --------------------------------------------------------------------------------------------
# Section 4: bytes, measured vs analytic.


def data_shape(cfg: Config) -> tuple[tuple[int, int, int], int]:
    dataset = open_dataset(cfg.data, "heldout")
    return dataset.image_shape, dataset.num_classes


def analytic_iteration_bytes(cfg: Config, workers: int) -> int:
    """The paper's Table III, 3*b*d*N values of the wire dtype per iteration at the server (X_d and
    X_g out, F_n back, to and from every worker), plus ACGAN's 2*b labels per worker in the same
    dtype and one 64-byte header per packet: 2N headers."""
    shape, _ = data_shape(cfg)
    value = getattr(torch, cfg.comm.dtype).itemsize  # comm.dtype names a torch dtype
    b, d = cfg.train.batch_size, math.prod(shape)
    labels = 2 * b * value if cfg.model.conditional else 0
    return workers * (3 * b * d * value + labels + 2 * HEADER_BYTES)


def analytic_swap_bytes(cfg: Config) -> int:
    """What one worker sends per swap (swap.py: state_tensors): a DISCRIMINATOR header, then D's
    state_dict values and, with mdgan.swap_optimizer_state, per parameter Adam's step scalar and its
    two moments (|theta| values each), all as float32."""
    shape, classes = data_shape(cfg)
    discriminator = make_discriminator(cfg, shape, classes, 0)
    state = sum(tensor.numel() for tensor in discriminator.state_dict().values())
    parameters = list(discriminator.parameters())
    adam_values = len(parameters) + 2 * sum(p.numel() for p in parameters) if cfg.mdgan.swap_optimizer_state else 0
    return HEADER_BYTES + FLOAT32_BYTES * (state + adam_values)


def analytic_sync_bytes(cfg: Config, workers: int) -> int:
    """The FL-GAN server's bytes (sent + received) per averaging (flgan/server.py: synchronise):
    per worker one SYNC order header out; the worker's SYNC header + flat G and D in; the SYNC
    header + the average out. G and D travel as their floating-point state (averaging.py:
    model_tensors; integer buffers stay home) in float32."""
    shape, classes = data_shape(cfg)
    g, d = make_generator(cfg, shape, classes), make_discriminator(cfg, shape, classes, 0)
    floating = sum(tensor.numel() for tensor in model_tensors(g, d))
    order = HEADER_BYTES
    model_each_way = HEADER_BYTES + FLOAT32_BYTES * floating
    return workers * (order + 2 * model_each_way)


def swap_run(args: argparse.Namespace, runner: Runner) -> Result:
    """MD-GAN with swaps on, about 10 of them: E chosen from the shard size so that any
    --iterations and batch size give several swaps."""
    workers = 2
    cfg = compose_config(merge(runner.base, runner.extra))
    plan = plan_data(cfg, workers)
    period = max(1, runner.iterations // 10)
    epochs = period * cfg.train.batch_size / statistics.fmean(plan.shard_sizes)
    return runner(Spec("mdgan", workers, (f"mdgan.swap_every_epochs={epochs:.6g}",)))


def flgan_run(args: argparse.Namespace, runner: Runner) -> Result:
    return runner(Spec("flgan", memory_workers(args)))


def section_bytes(args: argparse.Namespace, runner: Runner) -> Table:
    rows = []
    n = optimisation_workers(args)
    iteration_runs = [(f"server per iteration, N={w}", runner(Spec("mdgan", w))) for w in args.workers]
    iteration_runs.append((f"server per iteration, N={n}", runner(Spec("mdgan", n, ("comm.dtype=bfloat16",)))))
    for name, run in iteration_runs:
        rows.append(
            {
                "quantity": name,
                "kind": "iteration",
                "workers": run.spec.workers,
                "dtype": run.cfg.comm.dtype,
                "measured": run.steady_bytes(),
                "analytic": analytic_iteration_bytes(run.cfg, run.spec.workers),
                "formula": "N*(3*b*d*bytes + 2*64)",
            }
        )
    swaps = swap_run(args, runner)
    for worker in swaps.worker_stats:
        rows.append(
            {
                "quantity": f"per swap, worker rank {worker['rank']} (N={swaps.spec.workers}, {worker['swaps']} swaps)",
                "kind": "swap",
                "workers": swaps.spec.workers,
                "dtype": "float32",
                "measured": worker["swap_bytes_sent"] / worker["swaps"],
                "measured_recv": worker["swap_bytes_recv"] / worker["swaps"],
                "analytic": analytic_swap_bytes(swaps.cfg),
                "formula": "64 + 4*(|D state| + #params + 2*|theta|)",
            }
        )
    flgan = flgan_run(args, runner)
    server = flgan.stats[0]
    rows.append(
        {
            "quantity": f"FL-GAN server per sync (N={flgan.spec.workers}, {server['syncs']} syncs)",
            "kind": "sync",
            "workers": flgan.spec.workers,
            "dtype": "float32",
            "measured": (server["sync_bytes_sent"] + server["sync_bytes_recv"]) / server["syncs"],
            "analytic": analytic_sync_bytes(flgan.cfg, flgan.spec.workers),
            "formula": "N*(64 + 2*(64 + 4*|G,D floating state|))",
        }
    )
    for row in rows:
        row["ratio"] = row["measured"] / row["analytic"]
        row["exact"] = row["measured"] == row["analytic"]
    exact = all(row["exact"] for row in rows)
    return Table(
        "Bytes: measured vs analytic",
        [
            Column("quantity", "quantity"),
            Column("dtype", "wire dtype"),
            Column("measured", "measured bytes", lambda v: f"{v:,.0f}" if v == int(v) else f"{v:,.2f}"),
            Column("analytic", "analytic bytes", integer),
            Column("ratio", "measured / analytic", exact_ratio),
            Column("formula", "analytic formula"),
        ],
        rows,
        notes=[
            "Per iteration: sent + received by the server in one iteration away from control messages "
            "(swaps off), against the paper's 3*b*d*N values (Table III) of the wire dtype plus one 64-byte "
            "header per packet. Per swap: bytes one worker sends per swap (it receives as many), D's "
            "state_dict and Adam state (step + 2 moments per parameter) as float32. FL-GAN: the server's "
            "bytes per averaging, the SYNC order + both models' floating state in and the average out.",
            "Every measured figure equals its analytic one exactly." if exact else "NOT all figures match exactly.",
        ],
        summary={"all_exact": exact},
    )


# --------------------------------------------------------------------------------------------
# Section 5: peak memory.


def memory_workers(args: argparse.Namespace) -> int:
    return 4 if 4 in args.workers else max(args.workers)


def optimisation_workers(args: argparse.Namespace) -> int:
    small = [n for n in args.workers if n <= 4]
    return max(small) if small else min(args.workers)


def section_memory(args: argparse.Namespace, runner: Runner) -> Table:
    n = memory_workers(args)
    runs = [
        (f"MD-GAN N={n}", runner(Spec("mdgan", n))),
        (f"FL-GAN N={n}", flgan_run(args, runner)),
        ("standalone", runner(Spec("standalone", 0))),
    ]
    rows = []
    for name, run in runs:
        workers = run.worker_stats
        largest = max(workers, key=lambda s: s["peak_rss_bytes"]) if workers else None
        rows.append(
            {
                "run": name,
                "server_rss": run.stats[0]["peak_rss_bytes"],
                "worker_rss": largest and largest["peak_rss_bytes"],
                "server_cuda": run.stats[0]["cuda_peak_bytes"],
                "worker_cuda": max((s["cuda_peak_bytes"] or 0 for s in workers), default=None),
            }
        )
    columns = [
        Column("run", "run"),
        Column("server_rss", "server (or the one process) peak RSS MiB", mib),
        Column("worker_rss", "largest worker peak RSS MiB", mib),
    ]
    if args.device == "cuda":
        columns += [
            Column("server_cuda", "server CUDA peak MiB", mib),
            Column("worker_cuda", "worker CUDA peak MiB", mib),
        ]
    return Table(
        "Peak memory",
        columns,
        rows,
        notes=[
            "Peak resident set size of each process (getrusage ru_maxrss, written by every rank at the end "
            "in stats_rank*.json); it includes the Python interpreter and torch (a few hundred MiB each)."
            + (" CUDA: torch.cuda.max_memory_allocated." if args.device == "cuda" else "")
        ],
    )


# --------------------------------------------------------------------------------------------
# Section 6: optimisations, before and after in one run.


def section_optimisations(args: argparse.Namespace, runner: Runner) -> Table:
    n = optimisation_workers(args)
    baseline = Spec("mdgan", n)
    groups: list[tuple[str, list[tuple[str, Spec]]]] = [
        (
            "wire dtype",
            [("comm.dtype=float32", baseline), ("comm.dtype=bfloat16", Spec("mdgan", n, ("comm.dtype=bfloat16",)))],
        ),
        (
            "overlap",
            [("mdgan.overlap=false", baseline), ("mdgan.overlap=true", Spec("mdgan", n, ("mdgan.overlap=true",)))],
        ),
    ]
    notes = []
    if n >= 2:
        slow = (f"fault.slow_worker={n}@{STRAGGLER_SECONDS:g}",)
        groups.append(
            (
                f"straggler (rank {n} sleeps {STRAGGLER_SECONDS * 1e3:g} ms)",
                [
                    ("quorum unset (waits for all)", Spec("mdgan", n, slow)),
                    (f"mdgan.quorum={n - 1}", Spec("mdgan", n, (*slow, f"mdgan.quorum={n - 1}"))),
                ],
            )
        )
    else:
        notes.append("Straggler rows need N >= 2 (pass --workers with a value from 2 to 4).")
    if args.before_source:
        # Both at the trainer's default threads: the code before has no train.threads.
        groups.append(
            (
                "the protocol's code",
                [
                    (f"{args.before} (before)", Spec("mdgan", n, threads=None, source=args.before_source)),
                    ("this tree", Spec("mdgan", n, threads=None)),
                ],
            )
        )
    if args.device == "cuda":
        cnn = ("model=mnist_cnn",)
        groups.append(
            (
                "GPU precision (model=mnist_cnn)",
                [
                    ("float32", Spec("mdgan", n, cnn)),
                    ("train.precision=bf16", Spec("mdgan", n, (*cnn, "train.precision=bf16"))),
                    (
                        "bf16 + train.channels_last=true",
                        Spec("mdgan", n, (*cnn, "train.precision=bf16", "train.channels_last=true")),
                    ),
                ],
            )
        )
    rows = []
    for group, variants in groups:
        before = runner(variants[0][1])
        for variant, spec in variants:
            run = runner(spec)
            rows.append(
                {
                    "optimisation": group,
                    "variant": variant,
                    "workers": n,
                    "wall_seconds": run.wall,
                    "vs_before": run.wall / before.wall,
                    "bytes_per_iteration": run.steady_bytes(),
                    # The code before (--before) logged neither.
                    "feedbacks_used": run.mean("feedbacks_used") if "feedbacks_used" in run.records[0] else None,
                    "feedbacks_late": run.stats.get(0, {}).get("feedbacks_late"),
                }
            )
    return Table(
        f"Optimisations, before and after (MD-GAN, N={n})",
        [
            Column("optimisation", "optimisation"),
            Column("variant", "variant"),
            Column("wall_seconds", "wall ms/iter", ms),
            Column("vs_before", "/ first row", ratio),
            Column("bytes_per_iteration", "server bytes/iter", integer),
            Column("feedbacks_used", "feedbacks used (mean)", lambda v: "" if v is None else f"{v:.2f}"),
            Column("feedbacks_late", "late feedbacks (run)", integer),
        ],
        rows,
        notes=[
            "Wall: median iteration_seconds, first 10% dropped; each group's first row is its baseline. "
            "Bytes: one iteration's server bytes away from control messages (with a straggler and a quorum "
            "they vary: late feedback is counted when it arrives). Feedbacks used: mean per iteration "
            "of the feedbacks G's step used; late: feedbacks received after their iteration's quorum, "
            "discarded.",
            *notes,
        ],
    )


# --------------------------------------------------------------------------------------------
# The run.

RUNNERS: dict[str, Callable[[argparse.Namespace, Runner], Table]] = {
    "compute": section_compute,
    "protocol": section_protocol,
    "scaling": section_scaling,
    "bytes": section_bytes,
    "memory": section_memory,
    "optimisations": section_optimisations,
}


def checkout(ref: str, scratch: Path) -> Path:
    """The trainer as it was at a git ref (src/ and conf/, which it finds beside src/): returns
    the src/ folder to put on PYTHONPATH."""
    tree = scratch / "before"
    tree.mkdir()
    repository = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "archive", ref, "src", "conf"], cwd=repository, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree / "src"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(args: argparse.Namespace) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else None
    processes = max(args.workers) + 1
    return {
        "cpu": cpu_model(),
        "cpus": cores,
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "device": args.device,
        "most_processes": processes,
        "oversubscribed": processes > cores,
    }


def header(info: dict[str, Any], args: argparse.Namespace, runner: Runner) -> str:
    device = f"cuda ({info['gpu']}), gloo" if info["gpu"] else "cpu, gloo"
    line = f"Machine: {info['cpus']} CPUs ({info['cpu']}), torch {info['torch']}, {info['date']}, device {device}."
    if info["oversubscribed"]:
        line += f" Up to {info['most_processes']} processes on {info['cpus']} cores: oversubscribed."
    command = " ".join(["bench/suite.py", *sys.argv[1:]])
    settings = (
        f"`{command}`: {runner.iterations} iterations per job, overrides "
        f"{' '.join(merge(runner.base, runner.extra)) or '(defaults)'}; every job train.threads=1 unless noted."
    )
    return f"{line}\n{settings}\n"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=None, help="per job (default 300; --quick 30)")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="N values (default 1 2 4 8; --quick 1 2)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny models, few iterations: for the test")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--repetitions", type=int, default=None, help="in-process iterations timed (default 30)")
    parser.add_argument("--json", type=Path, default=None, help="write every table and job here")
    parser.add_argument("--scratch", type=Path, default=None, help="keep the run directories here")
    parser.add_argument("--job-timeout", type=float, default=1800.0, help="seconds before a job is killed")
    parser.add_argument(
        "--before", default=None, help="a git ref: also run its trainer in the optimisations section, for before/after"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every job (after --)")
    args = parser.parse_args(argv)
    args.iterations = args.iterations or (30 if args.quick else 300)
    args.workers = args.workers or ([1, 2] if args.quick else [1, 2, 4, 8])
    args.repetitions = args.repetitions or (10 if args.quick else 30)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU visible to torch")
    return args


def main(argv: list[str] | None = None) -> None:
    started = time.perf_counter()
    args = parse(argv)
    base = [*(QUICK if args.quick else [])]
    if args.device == "cuda":
        base += ["train.device=cuda", "comm.backend=gloo"]  # the one-GPU benchmark: every rank on it
    info = machine(args)
    with tempfile.TemporaryDirectory(prefix="mdgan-bench-") as temporary:
        scratch = args.scratch or Path(temporary)
        args.before_source = checkout(args.before, scratch) if args.before else None
        runner = Runner(args.iterations, base, args.overrides, scratch, args.job_timeout)
        tables = {}
        for name in args.sections:
            section_started = time.perf_counter()
            tables[name] = RUNNERS[name](args, runner)
            print(f"[bench] {name}: {time.perf_counter() - section_started:.0f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - started
    print(header(info, args, runner))
    for table in tables.values():
        print(table.markdown())
    print(f"Total: {total:.0f} s for {len(runner.results)} jobs and the in-process section.")
    if args.json:
        document = {
            "machine": info,
            "settings": {
                "iterations": args.iterations,
                "workers": args.workers,
                "device": args.device,
                "quick": args.quick,
                "repetitions": args.repetitions,
                "overrides": merge(base, args.overrides),
                "warm_up_fraction": WARM_UP,
            },
            "sections": {name: table.to_json() for name, table in tables.items()},
            "jobs": [
                {
                    "algorithm": result.spec.algorithm,
                    "workers": result.spec.workers,
                    "overrides": result.overrides,
                    "job_seconds": result.job_seconds,
                    "median_iteration_seconds": result.wall,
                    "threads": result.threads,
                }
                for result in runner.results.values()
            ],
            "total_seconds": total,
        }
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
