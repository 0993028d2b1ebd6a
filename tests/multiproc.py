"""Start real jobs for tests: one OS process per rank, each with the environment torchrun gives it.

Starting the ranks directly (no torchrun agent) lets a test see every rank's own exit code and
output, and kill or stop one rank precisely. Each job gets a free port of its own. The ranks are
forked from an interpreter that imported the trainer once (forked.py); Torchrun starts fresh ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import forked
from chaos import rank_pids
from mdgan_dist.experiments import launcher
from mdgan_dist.experiments.launcher import free_port

# Small enough that 1 server + 4 workers share 2 cores in seconds.
TINY = ["model.width=0.0625", "log.progress=false", "train.batch_size=16", "eval.every=0"]
TRAIN = [sys.executable, "-m", "mdgan_dist.train"]


def rank_environment(rank: int, world_size: int, port: int) -> dict[str, str]:
    """The launcher's environment for a rank, on one intra-op thread (see one_intra_op_thread)."""
    return {**os.environ, **launcher.rank_environment(rank, world_size, port), "OMP_NUM_THREADS": "1"}


@dataclass
class Rank:
    rank: int
    process: forked.ForkedProcess | subprocess.Popen
    log_path: Path

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class Job:
    """world_size processes of `command + args + rank_args[rank]`, logs in tmp/rank<r>.log."""

    def __init__(
        self,
        tmp: Path,
        world_size: int,
        command: list[str],
        args: list[str],
        rank_args: dict[int, list[str]] | None = None,
    ) -> None:
        port = free_port()
        self.ranks: list[Rank] = []
        for rank in range(world_size):
            log_path = tmp / f"rank{rank}.log"
            argv = [*command, *args, *(rank_args or {}).get(rank, [])]
            process = forked.start(argv, rank_environment(rank, world_size, port), tmp, log_path)
            self.ranks.append(Rank(rank, process, log_path))

    def wait(self, timeout_s: float) -> list[int]:
        """Exit codes of all ranks; kills everything and fails the test if they outlive the timeout."""
        deadline = time.monotonic() + timeout_s
        try:
            return [rank.process.wait(timeout=max(deadline - time.monotonic(), 0.1)) for rank in self.ranks]
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"job did not end within {timeout_s}s:\n{self.outputs()}") from None

    def signal(self, rank: int, sig: signal.Signals) -> None:
        self.ranks[rank].process.send_signal(sig)

    def kill(self) -> None:
        for rank in self.ranks:
            if rank.process.poll() is None:
                rank.process.kill()
                rank.process.wait()

    def outputs(self) -> str:
        return "\n".join(f"--- rank {rank.rank}\n{rank.output[-3000:]}" for rank in self.ranks)


def train_job(
    tmp: Path, world_size: int, overrides: list[str], rank_overrides: dict[int, list[str]] | None = None
) -> Job:
    """The trainer itself, writing to tmp/run."""
    return Job(tmp, world_size, TRAIN, [*overrides, f"run.dir={tmp / 'run'}"], rank_overrides)


def run_job(tmp: Path, world_size: int, overrides: list[str], timeout_s: float = 180) -> Path:
    """Runs the trainer to the end, asserts every rank succeeded, returns the run directory."""
    job = train_job(tmp, world_size, overrides)
    codes = job.wait(timeout_s)
    assert codes == [0] * world_size, f"exit codes {codes}:\n{job.outputs()}"
    return tmp / "run"


class Torchrun:
    """The trainer under a real torchrun agent (its restart policy, its handling of failures)."""

    def __init__(self, tmp: Path, nproc: int, overrides: list[str], torchrun_args: list[str] = ()) -> None:
        self.run_dir = tmp / "run"
        self.log_path = tmp / "torchrun.log"
        command = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            f"--master-port={free_port()}", *torchrun_args,
            "-m", "mdgan_dist.train", *overrides, f"run.dir={self.run_dir}",
        ]  # fmt: skip
        env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"torchrun did not end within {timeout_s}s:\n{self.output[-5000:]}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def rank_pid(self, rank: int) -> int:
        """The pid of this job's trainer process with the given RANK."""
        pid = rank_pids(self.run_dir).get(rank)
        if pid is None:
            raise AssertionError(f"no trainer process with RANK={rank} for {self.run_dir}")
        return pid


def trainer_processes(run_dir: Path) -> list[int]:
    """Every live process whose command line names this run directory."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(run_dir).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # it ended while we looked
    return found


def metrics(run_dir: Path) -> list[dict]:
    """The records of a run's metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]


def without_timings(records: list[dict]) -> list[dict]:
    """Metrics records less what depends on the machine's speed: seconds."""
    return [{k: v for k, v in r.items() if not (k.endswith("_seconds") or k.startswith("time_"))} for r in records]


def assert_same_final_models(run_dir: Path, reference: Path) -> None:
    """The final generator and every final discriminator of two runs are equal bit for bit."""
    files = sorted(path.name for path in reference.glob("*.pt"))
    assert files == sorted(path.name for path in run_dir.glob("*.pt")) and "generator.pt" in files
    for name in files:
        got, want = torch.load(run_dir / name), torch.load(reference / name)
        assert got.keys() == want.keys()
        # Every model in the file: generator.pt holds G and its moving average, a worker process's
        # file one state per worker it hosts.
        for key, value in want.items():
            models = value if isinstance(value, list) else [value]
            for index, model in enumerate(model for model in models if isinstance(model, dict)):
                other = got[key] if isinstance(value, dict) else got[key][index]
                assert other.keys() == model.keys()
                assert all(torch.equal(other[p], model[p]) for p in model), f"{name} {key} {index} differs"


def wait_for_iteration(metrics: Path, iteration: int, timeout_s: float) -> None:
    """Blocks until metrics.jsonl (log.every=1) holds the given iteration."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if metrics.exists() and sum(1 for _ in metrics.open()) >= iteration:
            return
        time.sleep(0.2)
    raise AssertionError(f"{metrics} did not reach iteration {iteration} within {timeout_s}s")
