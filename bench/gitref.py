"""The trainer as it was at a git ref, for before/after rows (--before)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def checkout(ref: str, scratch: Path) -> Path:
    """src/ and conf/ (which the trainer finds beside src/) of the ref, under scratch/before:
    returns the src/ folder to put on PYTHONPATH."""
    tree = scratch / "before"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", ref, "src", "conf"], cwd=REPOSITORY, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree / "src"
