"""Checkpoints on disk: atomic files per role, a manifest that marks one complete, the search for
the newest complete checkpoint to resume from, and which G a checkpoint or generator.pt shows.

Layout (the run directory is assumed to be on a file system every rank sees):
    <run_dir>/checkpoints/iteration_00001000/server.pt
    <run_dir>/checkpoints/iteration_00001000/rank2-holds-D0.pt     worker rank 2 holds the D born on worker 0
    <run_dir>/checkpoints/iteration_00001000/rank1-holds-D3-D0.pt  (mdgan.workers_per_rank=2) its slots hold D3, D0
    <run_dir>/checkpoints/iteration_00001000/rank2.pt              an FL-GAN worker's file
    <run_dir>/checkpoints/iteration_00001000/MANIFEST.json         written last, by the server
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mdgan_dist.config import Config
from mdgan_dist.errors import ConfigError
from mdgan_dist.trajectory import fingerprint, trajectory_differences

MANIFEST = "MANIFEST.json"
SERVER_FILE = "server.pt"


def checkpoints_root(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def checkpoint_dir(run_dir: Path, iteration: int) -> Path:
    return checkpoints_root(run_dir) / f"iteration_{iteration:08d}"


def resume_directory(cfg: Config, run_dir: Path, iteration: int) -> Path:
    """Where a run resumes from: the checkpoint named by resume=PATH, or run_dir's own."""
    return Path(cfg.resume) if cfg.resume not in ("auto", "never") else checkpoint_dir(run_dir, iteration)


def worker_file(directory: Path, rank: int, holds: list[int] | None = None) -> Path:
    """A worker process's file; MD-GAN's is named after the discriminators its slots hold."""
    if holds is None:
        return directory / f"rank{rank}.pt"
    return directory / f"rank{rank}-holds-{'-'.join(f'D{born_on}' for born_on in holds)}.pt"


def find_worker_file(directory: Path, rank: int) -> Path:
    named = directory.glob(f"rank{rank}-holds-D*.pt")
    matches = sorted([*named, *directory.glob(f"rank{rank}.pt")])
    if len(matches) != 1:
        raise ConfigError(f"checkpoint {directory} has {len(matches)} files for worker rank {rank}, expected 1")
    return matches[0]


def atomic_save(state: dict[str, Any], path: Path) -> None:
    """Written to a temporary name, flushed to disk, then renamed: a reader sees all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)  # a failed write (a full disk) leaves nothing half-written behind
        raise


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, iteration: int, trajectory: dict[str, Any]) -> None:
    """Marks the checkpoint complete: every file's size and hash, the iteration, the settings that
    determine the trajectory (trajectory.trajectory_settings)."""
    files = {
        path.name: {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(directory.glob("*.pt"))
    }
    manifest = {"iteration": iteration, "trajectory": trajectory, "files": files}
    text = json.dumps(manifest, indent=2)
    temporary = directory / (MANIFEST + ".tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, directory / MANIFEST)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def settings_differences(manifest: dict[str, Any], trajectory: dict[str, Any]) -> list[str]:
    """Each setting on which the run that wrote `manifest` and this one (its trajectory_settings)
    differ; [] when this run may resume from it."""
    if "trajectory" in manifest:
        return trajectory_differences(manifest["trajectory"], trajectory)
    if manifest.get("trajectory_digest") != fingerprint(trajectory):  # older: only a fingerprint was kept
        return ["the checkpoint predates recorded settings, and their fingerprint differs"]
    return []


def newest_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The manifest of run_dir's newest checkpoint that has a readable one; None if none has."""
    for directory in sorted(checkpoints_root(run_dir).glob("iteration_*"), reverse=True):
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict):
            return manifest
    return None


@dataclass(frozen=True)
class Checkpoint:
    directory: Path
    iteration: int


def verify(directory: Path, trajectory: dict[str, Any], num_workers: int) -> Checkpoint:
    """Raises ConfigError saying why this checkpoint cannot be resumed from. trajectory: this run's
    trajectory.trajectory_settings."""
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        raise ConfigError(f"checkpoint {directory} is incomplete: no {MANIFEST} (the run stopped while writing it)")
    try:
        manifest = json.loads(manifest_path.read_text())
        iteration, files = int(manifest["iteration"]), manifest["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"checkpoint {directory}: unreadable {MANIFEST} ({error})") from error
    differences = settings_differences(manifest, trajectory)
    if differences:
        raise ConfigError(
            f"checkpoint {directory} was written by a run with another configuration ({'; '.join(differences)}): "
            "resume it with the same settings, or start a new run with resume=never and another run.dir"
        )
    workers = [name for name in files if name.startswith("rank")]
    if SERVER_FILE not in files or len(workers) != num_workers:
        raise ConfigError(
            f"checkpoint {directory} lists {sorted(files)}: expected {SERVER_FILE} and {num_workers} workers"
        )
    for name, expected in files.items():
        path = directory / name
        if not path.exists():
            raise ConfigError(f"checkpoint {directory}: {name} is missing")
        if path.stat().st_size != expected["bytes"] or file_sha256(path) != expected["sha256"]:
            raise ConfigError(f"checkpoint {directory}: {name} is torn or truncated (size or sha256 differ)")
    return Checkpoint(directory, iteration)


def newest_complete(run_dir: Path, trajectory: dict[str, Any], num_workers: int) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint that verifies, and why each newer one was refused."""
    refused: list[str] = []
    for directory in sorted(checkpoints_root(run_dir).glob("iteration_*"), reverse=True):
        try:
            return verify(directory, trajectory, num_workers), refused
        except ConfigError as error:
            refused.append(str(error))
    return None, refused


def prune(run_dir: Path, keep: int) -> None:
    """Keeps the newest `keep` complete checkpoints; removes older ones, complete or not."""
    directories = sorted(checkpoints_root(run_dir).glob("iteration_*"), reverse=True)
    complete = [directory for directory in directories if (directory / MANIFEST).exists()]
    if len(complete) <= keep:
        return
    oldest_kept = complete[keep - 1]
    for directory in directories:
        if directory.name < oldest_kept.name:
            shutil.rmtree(directory, ignore_errors=True)


def load(path: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint or model file of this project: tensors in plain containers (dicts, lists,
    numbers, strings). torch.load's weights_only unpickler refuses anything else, so a shared or
    downloaded file cannot run code when it is read; such a file is a ConfigError naming it."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0]
        raise ConfigError(
            f"{path} holds more than tensors and plain values, which this project never writes: refused to "
            f"load it (torch.load weights_only; {reason}). Use files written by mdgan-dist from a source you trust"
        ) from error


def shown_generator(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The G to score from a loaded generator.pt (its "generator" is already the shown one,
    ema.final_generator) or server checkpoint (whose "generator" is the raw G, next to its "average")."""
    average = state.get("average")
    return state["generator"] if average is None else average["model"]
