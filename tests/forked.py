"""Rank processes forked from one interpreter that imported the trainer once.

A fresh interpreter spends about 4 s of CPU importing torch, torchvision and torch._dynamo (which
torchvision and Adam's first step pull in) before a rank does anything; the tests start over a
thousand ranks on 2 cores, so that import was most of `make test`. multiprocessing's forkserver
imports the trainer once and forks each rank from it, single-threaded: every rank is still its
own OS process, with its own pid, environment, working directory, argv, log file and exit code,
running the command's module or script as `__main__` exactly as `python -m ...` or `python
script.py` would, and talking to the others over real process groups.

MDGAN_TESTS_EXEC=1 starts every rank as a fresh interpreter instead (subprocess), the way torchrun
and SLURM start them (the torchrun and SLURM tests always do).
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import subprocess
import sys
from multiprocessing import forkserver
from multiprocessing.process import BaseProcess
from pathlib import Path

FORK = os.environ.get("MDGAN_TESTS_EXEC") != "1"
# What the server imports before it forks anything: the trainer and what a run imports later.
PRELOAD = ["mdgan_dist.train", "torch._dynamo", "torch.utils.tensorboard", "multiproc", "forked"]
_context = multiprocessing.get_context("forkserver")


def start_server() -> None:
    """Starts the fork server (once), with the environment every rank has anyway: one intra-op
    thread, read by OpenMP when torch loads."""
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        forkserver.set_forkserver_preload(PRELOAD)
        forkserver.ensure_running()
    finally:
        if saved is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = saved


class ForkedProcess:
    """A forked rank, with the part of subprocess.Popen's interface the tests use."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        start_server()
        self.process: BaseProcess = _context.Process(target=run_as_main, args=(command[1:], env, cwd, log_path))
        self.process.start()
        self.pid = self.process.pid

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
        return self.process.exitcode

    def poll(self) -> int | None:
        return self.process.exitcode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        self.process.kill()


def run_as_main(arguments: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
    """In the forked rank: `python ARGUMENTS...` (`-m module args...` or `script args...`) with
    this environment, working directory and output. SystemExit's code becomes the exit code."""
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    if arguments[0] == "-m":
        sys.argv = [arguments[1], *arguments[2:]]  # run_module puts the module's path first, as -m does
        # As in a fresh interpreter, the module runs as __main__ only; its imports stay preloaded.
        sys.modules.pop(arguments[1], None)
        runpy.run_module(arguments[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = arguments
        runpy.run_path(arguments[0], run_name="__main__")


def start(command: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> ForkedProcess | subprocess.Popen:
    """`command` (sys.executable and its arguments) as one rank, writing to log_path (created)."""
    with open(log_path, "wb") as log:
        if FORK and command[0] == sys.executable:
            return ForkedProcess(command, env, cwd, log_path)
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
