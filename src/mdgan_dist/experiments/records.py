"""A run's summary as a small JSON file, its record: what results reads of a run directory (scores,
figures, costs, floor) without its models, checkpoints and samples. `mdgan-experiment results`
writes one per run; kept beside a grid's tables (some 20 kB each), records let the tables be rebuilt
and the runner skip what has finished on a machine that never held the run directories."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from mdgan_dist.errors import ConfigError
from mdgan_dist.experiments.results import RunSummary, summarize_under

RECORD_SUFFIX = ".record.json"
VERSION = 1  # raised when a field changes meaning: an older record is refused, not misread


def record_path(folder: Path, name: str) -> Path:
    return folder / f"{name}{RECORD_SUFFIX}"


def write_records(runs: list[RunSummary], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for run in runs:
        path = record_path(folder, run.name)
        path.write_text(json.dumps({"version": VERSION, **dataclasses.asdict(run)}, indent=1) + "\n")
        paths.append(path)
    return paths


def read_record(path: Path) -> RunSummary:
    try:
        fields: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not a run record (JSON): {error}") from error
    version = fields.pop("version", None)
    if version != VERSION:
        raise ConfigError(f"{path} is a run record of version {version}; this release reads version {VERSION}")
    try:
        # JSON has no tuples and only string keys: give back the types RunSummary holds.
        fields["curves"] = {score: [tuple(point) for point in points] for score, points in fields["curves"].items()}
        fields["bytes_total"] = {int(iteration): value for iteration, value in fields["bytes_total"].items()}
        if fields["floor"] is not None:
            fields["floor"] = tuple(fields["floor"])
        return RunSummary(**fields)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{path} does not hold a run record's fields: {error!r}") from error


def read_records(root: Path) -> list[RunSummary]:
    """Every record under root (root itself included)."""
    return [read_record(path) for path in sorted(root.rglob(f"*{RECORD_SUFFIX}"))] if root.is_dir() else []


def finished_names(folder: Path) -> set[str]:
    """The names of the runs whose record under folder says they finished."""
    return {run.name for run in read_records(folder) if run.finished}


class NoRunsError(Exception):
    """The folders hold neither a run directory (config.yaml) nor a run record."""


def collect(roots: list[Path]) -> list[RunSummary]:
    """Every run under the roots, in the table's order: every run directory, and the records of the
    runs whose directory is not there (a run directory is at least as fresh as its record; a record
    found in several folders counts once, the first root's)."""
    directories = [run for root in roots for run in summarize_under(root)]
    recorded = {run.name: run for root in reversed(roots) for run in read_records(root)}  # one per name
    have = {run.name for run in directories}
    runs = directories + [run for name, run in recorded.items() if name not in have]
    if not runs:
        where = ", ".join(map(str, roots))
        raise NoRunsError(
            f"no runs under {where}: expected run directories (folders holding config.yaml and metrics.jsonl) "
            f"or run records (*{RECORD_SUFFIX}, written by `mdgan-experiment results`)"
        )
    return sorted(runs, key=lambda run: run.sort_key)
