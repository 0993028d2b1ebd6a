"""Jobs of the real trainer for the benchmark sections: one runner, each distinct job run once and
shared, read back from what the job wrote in its run directory."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from mdgan_dist.config import Config
from mdgan_dist.config import load as load_config
from mdgan_dist.experiments.launcher import free_port

WARM_UP = 0.1  # fraction of every run's first iterations left out of every median


@dataclass(frozen=True)
class Spec:
    """One training job: what a section asks for. threads=None keeps the trainer's default."""

    algorithm: str  # mdgan | flgan | standalone
    workers: int  # N; 0 for standalone
    overrides: tuple[str, ...] = ()
    threads: int | None = 1
    source: Path | None = None  # another tree's src/ to run (--before), instead of this one's
    per_rank: int = 1  # mdgan.workers_per_rank: the job runs N / per_rank worker processes
    repeat: int = 0  # a repeat of the same job (its own run, not the cached one)

    @property
    def processes(self) -> int:
        return self.workers // self.per_rank + 1


@dataclass
class Result:
    spec: Spec
    overrides: list[str]  # the job's full command-line overrides
    cfg: Config
    records: list[dict[str, Any]]  # metrics.jsonl, one per iteration
    stats: dict[int, dict[str, Any]]  # stats_rank{r}.json by rank
    job_seconds: float  # wall time of the whole command, start-up included
    threads: int | None  # intra-op threads the server (or the one process) says it used
    launch: str  # how its processes started (Launch.name)

    @property
    def warm(self) -> list[dict[str, Any]]:
        """The records after the warm-up (the first 10%: allocation, caches, connections)."""
        return self.records[int(len(self.records) * WARM_UP) :]

    def values(self, key: str | Callable[[dict[str, Any]], float]) -> list[float]:
        """One value per warm record: the record's key, or the function of the record."""
        value = key if callable(key) else (lambda record: record[key])
        return [value(record) for record in self.warm]

    def median(self, key: str | Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(self.values(key))

    def mean(self, key: str | Callable[[dict[str, Any]], float]) -> float:
        return statistics.fmean(self.values(key))

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


def launcher(spec: Spec) -> list[str]:
    """The command that starts the job's processes: torchrun with N+1 ranks, or one plain process."""
    if spec.algorithm == "standalone":
        return [sys.executable, "-m", "mdgan_dist.train"]
    return [
        *(sys.executable, "-m", "torch.distributed.run"),
        f"--nproc_per_node={spec.processes}",
        f"--master-port={free_port()}",
        *("-m", "mdgan_dist.train"),
    ]


class Launch(Protocol):
    """How a job's processes start; the rest of a job (its overrides, its run directory, what is
    read back) is the runner's."""

    name: str  # sets its jobs apart from the same jobs started another way

    def __call__(
        self, spec: Spec, argv: list[str], env: dict[str, str] | None, cwd: Path, output: IO[str], timeout_s: float
    ) -> int:
        """Runs the trainer with argv (its overrides) to the end and returns the exit code, the
        first failing rank's where ranks are started one by one; subprocess.TimeoutExpired past
        timeout_s, with every process ended."""
        ...


class Torchrun:
    """The job on this machine's loopback: torchrun with N+1 ranks, or one plain process."""

    name = "torchrun"

    def __call__(
        self, spec: Spec, argv: list[str], env: dict[str, str] | None, cwd: Path, output: IO[str], timeout_s: float
    ) -> int:
        command = [*launcher(spec), *argv]
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            return process.wait(timeout=timeout_s)
        finally:  # past the timeout, or on Ctrl-C
            if process.poll() is None:
                end_torchrun(process)


TORCHRUN = Torchrun()
TORCHRUN_GRACE_S = 60.0  # torchrun's own wait for its ranks to end is 30 s before it kills them


def end_torchrun(process: subprocess.Popen[bytes]) -> None:
    """Ends a torchrun and every rank it started. Its ranks run in sessions of their own, out of
    reach of a signal to its process group, and a killed torchrun leaves them running: it is asked
    to stop (SIGTERM), and it ends its ranks before it exits. Killed only if it does not."""
    process.terminate()
    try:
        process.wait(timeout=TORCHRUN_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Runner:
    """Runs jobs of the real trainer in a scratch folder and reads back what they wrote."""

    def __init__(self, iterations: int, base: list[str], extra: list[str], scratch: Path, timeout_s: float) -> None:
        self.iterations = iterations
        self.base = base
        self.extra = extra
        self.scratch = scratch
        self.timeout_s = timeout_s
        self.results: dict[tuple[str, str, int, tuple[str, ...], Path | None, int], Result] = {}

    def shared_overrides(self) -> list[str]:
        """What every job gets from the command line (--quick, --device, after --)."""
        return merge(self.base, self.extra)

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
            if spec.per_rank != 1:
                common.append(f"mdgan.workers_per_rank={spec.per_rank}")
        if spec.threads is not None:
            common.append(f"train.threads={spec.threads}")
        return merge(common, self.base, self.extra, spec.overrides)

    def __call__(self, spec: Spec, launch: Launch = TORCHRUN) -> Result:
        overrides = self.overrides(spec)
        key = (launch.name, spec.algorithm, spec.workers, tuple(sorted(overrides)), spec.source, spec.repeat)
        if key not in self.results:
            self.results[key] = self.run(spec, overrides, launch)
        return self.results[key]

    def run(self, spec: Spec, overrides: list[str], launch: Launch) -> Result:
        run_dir = self.scratch / f"{len(self.results):02d}-{spec.algorithm}-n{spec.workers}"
        run_dir.mkdir(parents=True)
        argv = [*overrides, f"run.dir={run_dir}"]
        print(
            f"[bench] {spec.algorithm} N={spec.workers} on {spec.processes} processes, {launch.name}: "
            f"{' '.join(overrides)}",
            file=sys.stderr,
            flush=True,
        )
        started = time.perf_counter()
        log = run_dir / "job.log"
        env = dict(os.environ, PYTHONPATH=str(spec.source)) if spec.source else None
        with log.open("w") as output:
            # cwd: Hydra writes nothing outside run.dir, but keep the repository clean regardless.
            code = launch(spec, argv, env, run_dir, output, self.timeout_s)
        seconds = time.perf_counter() - started
        if code != 0:
            tail = log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"job failed ({code}) under {launch.name}: {' '.join(argv)}\n{tail}")
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
        records = [record for record in records if "iteration_seconds" in record]  # not score records
        stats = {}
        for path in run_dir.glob("stats_rank*.json"):
            entry = json.loads(path.read_text())
            stats[entry["rank"]] = entry
        cfg = load_config(run_dir / "config.yaml")
        # The server's (or the one process's) intra-op threads; a --before tree may not record them.
        return Result(spec, overrides, cfg, records, stats, seconds, stats[0].get("threads"), launch.name)
