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


def commit_of(source: Path | None, before: str | None) -> str:
    """The commit a job's trainer came from: the --before ref's, or this tree's (with "+changes"
    when it differs from its commit)."""
    ref = before if source is not None and before else "HEAD"
    commit = subprocess.run(["git", "rev-parse", ref], cwd=REPOSITORY, capture_output=True, text=True, check=True)
    changed = (
        ref == "HEAD"
        and subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPOSITORY, capture_output=True, text=True
        ).stdout.strip()
    )
    return commit.stdout.strip() + ("+changes" if changed else "")
