"""What a suite run prints before its tables, and the JSON file of the whole run (--json)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gitref import commit_of
from jobs import WARM_UP, Runner
from sections.table import Table


def header(info: dict[str, Any], runner: Runner) -> str:
    """The machine and the command, above the tables: the figures mean little without them."""
    device = f"cuda ({info['gpu']}), gloo" if info["gpu"] else "cpu, gloo"
    line = f"Machine: {info['cpus']} CPUs ({info['cpu']}), torch {info['torch']}, {info['date']}, device {device}."
    if info["oversubscribed"]:
        line += f" Up to {info['most_processes']} processes on {info['cpus']} cores: oversubscribed."
    command = " ".join(["bench/suite.py", *sys.argv[1:]])
    settings = (
        f"`{command}`: {runner.iterations} iterations per job, overrides "
        f"{' '.join(runner.shared_overrides()) or '(defaults)'}; every job train.threads=1 unless noted."
    )
    return f"{line}\n{settings}\n"


def document(
    info: dict[str, Any], args: argparse.Namespace, runner: Runner, tables: dict[str, Table], total: float
) -> dict[str, Any]:
    """Every table, every job and the settings, as JSON."""
    return {
        "machine": info,
        "settings": {
            "iterations": args.iterations,
            "workers": args.workers,
            "device": args.device,
            "quick": args.quick,
            "repetitions": args.repetitions,
            "overrides": runner.shared_overrides(),
            "warm_up_fraction": WARM_UP,
        },
        "sections": {name: table.to_json() for name, table in tables.items()},
        "jobs": [
            {
                "algorithm": result.spec.algorithm,
                "workers": result.spec.workers,
                "processes": result.spec.processes if result.spec.algorithm != "standalone" else 1,
                "workers_per_rank": result.spec.per_rank,
                "repeat": result.spec.repeat,
                "commit": commit_of(result.spec.source, args.before),
                "overrides": result.overrides,
                "job_seconds": result.job_seconds,
                "median_iteration_seconds": result.wall,
                "threads": result.threads,
                "launch": result.launch,
            }
            for result in runner.results.values()
        ],
        "total_seconds": total,
    }
