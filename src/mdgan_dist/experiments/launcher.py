"""Launching a grid: one configuration after the other on this machine, or one SLURM job each."""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mdgan_dist.experiments.formatting import duration
from mdgan_dist.experiments.grid import Configuration, Preset
from mdgan_dist.experiments.paths import SBATCH_SCRIPT
from mdgan_dist.experiments.rundir import LOG_FILE, is_finished, write_grid_info
from mdgan_dist.run_directory import holds_run

POLL_SECONDS = 0.5  # how often a local run's plain processes are checked for one that failed


class LaunchError(RuntimeError):
    """A configuration could not be run or submitted; the message says why and where to look."""


@dataclass(frozen=True)
class Job:
    preset: str
    configuration: Configuration
    run_dir: Path
    overrides: list[str]  # every trainer override, run.dir last
    resumes: bool  # the run dir holds an unfinished run: continue it from its checkpoints
    killed_ranks: tuple[int, ...] = ()  # the workers its fault.kill_worker schedule kills

    @property
    def name(self) -> str:
        return self.configuration.name

    def grid_info(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "name": self.name,
            "group": self.configuration.group,
            **dataclasses.asdict(self.configuration),
            "overrides": self.overrides,
        }


def plan(preset: Preset, configurations: list[Configuration], root: Path, extra: list[str]) -> list[Job]:
    """Extra overrides come after the preset's and before the configuration's own: they change
    anything but what names a run (algorithm, N, k, b, its variant's overrides, the seed) and where
    it goes. run.dir comes last, since
    Hydra's last override wins, also over the run.dir launch/slurm.sbatch passes before ours."""
    jobs = []
    for configuration in configurations:
        run_dir = root / preset.name / configuration.name
        resumes = holds_run(run_dir) and not is_finished(run_dir)
        overrides = [
            *preset.overrides,
            *extra,
            *configuration.overrides(),
            *(["resume=auto"] if resumes else []),
            f"run.dir={run_dir}",
        ]
        jobs.append(Job(preset.name, configuration, run_dir, overrides, resumes))
    return jobs


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # set on top of this process's environment

    def __str__(self) -> str:
        return shlex.join([*(f"{name}={value}" for name, value in self.env.items()), *self.argv])

    def run(self, **kwargs: Any) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv, env={**os.environ, **self.env}, check=False, **kwargs)


@dataclass(frozen=True)
class RankProcesses:
    """One plain process per rank, each with the environment torchrun gives its ranks, and no agent
    over them: torchrun's agent stops every rank when one dies, so a run whose crash schedule kills
    workers could never train on without them (docs/operations.md, "With torchrun")."""

    command: Command
    world_size: int
    port: int

    def __str__(self) -> str:
        world = self.world_size
        ranks = f"RANK=0..{world - 1} WORLD_SIZE={world} MASTER_ADDR=127.0.0.1 MASTER_PORT={self.port}"
        return f"{world} processes with {ranks}: {self.command}"

    def run(self, may_die: tuple[int, ...], **kwargs: Any) -> list[int]:
        """Starts every rank and returns their exit codes in rank order. A rank that fails, other
        than those in may_die, ends the others as torchrun's agent would: a rank waiting for it to
        join the group would otherwise wait out the whole timeout."""
        processes = [
            subprocess.Popen(
                self.command.argv,
                env={**os.environ, **self.command.env, **rank_environment(rank, self.world_size, self.port)},
                **kwargs,
            )
            for rank in range(self.world_size)
        ]
        try:
            codes = [process.poll() for process in processes]
            while None in codes and not any(code and rank not in may_die for rank, code in enumerate(codes)):
                time.sleep(POLL_SECONDS)
                codes = [process.poll() for process in processes]
        finally:  # also on Ctrl-C: no rank outlives the launcher
            for process in processes:
                if process.poll() is None:
                    process.terminate()
        return [process.wait() for process in processes]


class Launcher(Protocol):
    def command(self, job: Job) -> Command | RankProcesses: ...

    def launch(self, job: Job) -> str:
        """Runs or submits the job's command; returns its status or raises LaunchError."""
        ...


class LocalLauncher:
    """torchrun on this machine with this Python; the standalone GAN as one plain process, and a
    run with a crash schedule as one plain process per rank."""

    def command(self, job: Job) -> Command | RankProcesses:
        train = Command([sys.executable, "-m", "mdgan_dist.train", *job.overrides])
        if job.configuration.workers is None:
            return train
        # A port of its own: a previous run's port may still linger in TIME_WAIT.
        port = free_port()
        if job.killed_ranks:
            return RankProcesses(train, job.configuration.world_size, port)
        torchrun = ["-m", "torch.distributed.run", f"--nproc_per_node={job.configuration.world_size}"]
        return Command([sys.executable, *torchrun, f"--master-port={port}", *train.argv[1:]])

    def launch(self, job: Job) -> str:
        command = self.command(job)
        started = time.monotonic()
        log_path = job.run_dir / LOG_FILE
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"$ {command}\n")
            log.flush()
            if isinstance(command, RankProcesses):
                codes = command.run(job.killed_ranks, stdout=log, stderr=subprocess.STDOUT)
            else:
                codes = [command.run(stdout=log, stderr=subprocess.STDOUT).returncode]
        took = duration(time.monotonic() - started)
        # The ranks the schedule kills die by design; every other rank must finish.
        failed = [(rank, code) for rank, code in enumerate(codes) if code != 0 and rank not in job.killed_ranks]
        if failed:
            if isinstance(command, RankProcesses):
                what = ", ".join(f"rank {rank} {exit_status(code)}" for rank, code in failed)
            else:
                what = exit_status(codes[0])
            raise LaunchError(f"{what} after {took}, see {log_path}")
        return f"done in {took}"


@dataclass(frozen=True)
class SlurmLauncher:
    """One job of launch/slurm.sbatch per configuration, N + 1 ranks over as few nodes as fit."""

    procs_per_node: int

    def command(self, job: Job) -> Command:
        nodes, per_node = split_ranks(job.configuration.world_size, self.procs_per_node)
        env = {
            "NPROC_PER_NODE": str(per_node),
            # Jobs of a grid may share a head node: each rendezvous needs a port of its own.
            "RDZV_PORT": str(free_port()),
            "MDGAN_PYTHON": sys.executable,
            # The script's stop file (checkpoint and requeue before the time limit) goes here.
            "MDGAN_RUN_DIR": str(job.run_dir),
        }
        sbatch = ["sbatch", "--parsable", f"--nodes={nodes}", f"--job-name={job.preset}-{job.name}"]
        output = f"--output={job.run_dir / 'slurm-%j.out'}"
        return Command([*sbatch, output, str(SBATCH_SCRIPT), *job.overrides], env)

    def launch(self, job: Job) -> str:
        command = self.command(job)
        try:
            result = command.run(capture_output=True, text=True)
        except FileNotFoundError as error:
            raise LaunchError("sbatch not found: run with --slurm on a SLURM login node") from error
        if result.returncode != 0:
            raise LaunchError(f"sbatch failed (exit code {result.returncode}): {result.stderr.strip()}")
        job_id = result.stdout.strip().split(";")[0]  # --parsable prints "id" or "id;cluster"
        nodes, per_node = split_ranks(job.configuration.world_size, self.procs_per_node)
        return f"submitted job {job_id} ({nodes} nodes x {per_node} ranks)"


def split_ranks(world_size: int, procs_per_node: int) -> tuple[int, int]:
    """(nodes, ranks per node): slurm.sbatch starts the same number of ranks on every node, so the
    fewest nodes that divide N + 1 evenly with at most procs_per_node ranks each."""
    nodes = -(-world_size // procs_per_node)
    while world_size % nodes:
        nodes += 1
    return nodes, world_size // nodes


def exit_status(code: int) -> str:
    """A process's end in words: "exit code 1", or "ended by SIGTERM" for Popen's -15."""
    return f"ended by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def rank_environment(rank: int, world_size: int, port: int) -> dict[str, str]:
    """What torchrun tells each rank of a job on this machine, for ranks started without it."""
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def classifier_command(overrides: list[str]) -> Command:
    return Command([sys.executable, "-m", "mdgan_dist.metrics.cli", "train-classifier", *overrides])


def ensure_classifier(overrides: list[str]) -> None:
    """Scores need the dataset's evaluation classifier: train it (or find it cached) once, before
    any run of the grid needs it, instead of in every run."""
    command = classifier_command(overrides)
    print(f"evaluation classifier: {command}", flush=True)
    code = command.run().returncode
    if code != 0:
        raise LaunchError(
            f"training the evaluation classifier failed (exit code {code}); "
            "run the grid with eval.every=0 to train without scores"
        )


def launch_grid(jobs: list[Job], launcher: Launcher, dry_run: bool) -> list[str]:
    """Runs or submits each job not finished yet, one status line each; returns the failed ones' names."""
    failed = []
    for index, job in enumerate(jobs, 1):
        prefix = f"[{index}/{len(jobs)}] {job.name}: "
        if is_finished(job.run_dir):
            print(f"{prefix}finished, skipped", flush=True)
            continue
        if dry_run:
            print(f"{prefix}{launcher.command(job)}", flush=True)
            continue
        print(f"{prefix}{'resuming, ' if job.resumes else ''}", end="", flush=True)
        write_grid_info(job.run_dir, job.grid_info())
        try:
            print(launcher.launch(job), flush=True)
        except LaunchError as error:
            print(f"FAILED: {error}", flush=True)
            failed.append(job.name)
    return failed
