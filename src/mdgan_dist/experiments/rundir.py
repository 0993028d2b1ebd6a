"""The files of a grid's run directory: what the trainer writes and what the runner adds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GRID_FILE = "grid.json"  # the runner's record of what it launched, N included (config.yaml lacks it)
LOG_FILE = "train.log"  # the trainer's output of local runs, appended to on every attempt


def is_finished(run_dir: Path) -> bool:
    """The trainer writes generator.pt only when a run reaches its last iteration."""
    return (run_dir / "generator.pt").exists()


def write_grid_info(run_dir: Path, info: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / GRID_FILE).write_text(json.dumps(info, indent=2) + "\n")


def read_grid_info(run_dir: Path) -> dict[str, Any]:
    """{} for a run the runner did not launch (started by hand)."""
    path = run_dir / GRID_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # the torn last line of a run killed while writing it
            continue
    return records
