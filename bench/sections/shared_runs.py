"""The N values and jobs that several sections use, chosen in one place so that they are one job."""

from __future__ import annotations

import argparse

from jobs import Result, Runner, Spec


def memory_workers(args: argparse.Namespace) -> int:
    return 4 if 4 in args.workers else max(args.workers)


def optimisation_workers(args: argparse.Namespace) -> int:
    small = [n for n in args.workers if n <= 4]
    return max(small) if small else min(args.workers)


def flgan_run(args: argparse.Namespace, runner: Runner) -> Result:
    return runner(Spec("flgan", memory_workers(args)))
