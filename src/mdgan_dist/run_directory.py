"""One run per run directory: nothing of an earlier run is written over.

A run continues the run already in its run.dir when resume= allows it and the settings that
determine the trajectory agree (trajectory.trajectory_settings). Any other run there is refused on
every rank before anything is written, or, with run.existing=move_aside, renamed aside by rank 0
before the process group exists, so before any rank writes.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf.errors import OmegaConfBaseException

from mdgan_dist.checkpoint import newest_manifest, settings_differences
from mdgan_dist.config import Config, ExistingRun
from mdgan_dist.config import load as load_config
from mdgan_dist.distributed.env import job_id
from mdgan_dist.errors import ConfigError
from mdgan_dist.trajectory import trajectory_differences, trajectory_settings

CLUSTERS_FILE = "clusters.pt"  # data.clusters: the centroids and counts (algorithms/clusters.py)
# What the trainer writes into a run directory; any of them means the directory holds a run.
RUN_OUTPUTS = ("config.yaml", "metrics.jsonl", "checkpoints", "generator.pt", CLUSTERS_FILE)


def holds_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in RUN_OUTPUTS)


def known_run_dir(cfg: Config) -> Path | None:
    """run.dir, or runs/<job id> when the launcher gives one; None when rank 0 picks a fresh name."""
    if cfg.run.dir is not None:
        return Path(cfg.run.dir)
    shared_id = job_id()
    return None if shared_id is None else Path("runs") / shared_id


def other_run(cfg: Config, run_dir: Path, num_workers: int) -> str | None:
    """Why run_dir holds a run that this one would not continue; None when it holds no run, or
    the same one (which resume=auto continues from its newest checkpoint, if any)."""
    if not holds_run(run_dir):
        return None
    if cfg.resume == "never":
        return "it holds a run, and resume=never starts a new one"
    trajectory = trajectory_settings(cfg, num_workers)
    manifest = newest_manifest(run_dir)
    if manifest is not None:
        differences = settings_differences(manifest, trajectory)
    elif (run_dir / "config.yaml").exists():
        try:
            saved = load_config(run_dir / "config.yaml")
        except OmegaConfBaseException as error:
            return f"it holds a run whose config.yaml this version cannot read ({type(error).__name__})"
        differences = trajectory_differences(trajectory_settings(saved, num_workers), trajectory, "its config.yaml")
    else:
        return "it holds a run's outputs without its config.yaml, so whether this run continues it is unknown"
    if differences:
        return f"it holds a run with another configuration ({'; '.join(differences)})"
    return None


def check_run_dir(cfg: Config, num_workers: int) -> Path | None:
    """Raises ConfigError if run.dir holds a run this one would not continue, unless
    run.existing=move_aside; returns the directory to move aside then (rank 0 moves it: move_aside)."""
    run_dir = known_run_dir(cfg)
    if run_dir is None:
        return None
    reason = other_run(cfg, run_dir, num_workers)
    if reason is None:
        return None
    if cfg.run.existing == ExistingRun.move_aside:
        if Path.cwd().resolve().is_relative_to(run_dir.resolve()):
            raise ConfigError(
                f"run.dir={run_dir}: {reason}, and run.existing=move_aside cannot move the working directory "
                "or a folder holding it: choose another run.dir"
            )
        return run_dir
    continue_it = ", or continue that run with resume=auto" if cfg.resume == "never" else ""
    raise ConfigError(
        f"run.dir={run_dir}: {reason}. Nothing was written. Choose another run.dir, or set "
        f"run.existing=move_aside to rename that run to {run_dir}.set-aside-<time> (nothing is deleted) and "
        f"start this one in run.dir{continue_it}"
    )


def move_aside(run_dir: Path) -> Path:
    """Renames run_dir to <run_dir>.set-aside-<time>[-n]; returns the new name."""
    base = run_dir.with_name(f"{run_dir.name}.set-aside-{time.strftime('%Y%m%d-%H%M%S')}")
    target, attempt = base, 1
    while target.exists():
        attempt += 1
        target = base.with_name(f"{base.name}-{attempt}")
    run_dir.rename(target)
    return target
