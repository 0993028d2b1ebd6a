"""Presets (conf/experiment/*.yaml) and their expansion into named trainer configurations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mdgan_dist.config import ALGORITHMS, MDGANConfig, resolved_k
from mdgan_dist.errors import ConfigError
from mdgan_dist.experiments.paths import PRESET_DIR

LOG2 = "log2"
GRID_KEYS = ("algorithms", "workers", "k", "batch_sizes")


@dataclass(frozen=True)
class Configuration:
    """One point of a grid. workers is None for standalone, k is None for everything but mdgan."""

    algorithm: str
    batch_size: int
    workers: int | None = None
    k: int | None = None

    @property
    def name(self) -> str:
        parts = [self.algorithm]
        if self.workers is not None:
            parts.append(f"N{self.workers}")
        if self.k is not None:
            parts.append(f"k{self.k}")
        return "-".join([*parts, f"b{self.batch_size}"])

    @property
    def world_size(self) -> int:
        """Processes of the run: the server and N workers, or the one standalone process."""
        return 1 if self.workers is None else self.workers + 1

    def overrides(self) -> list[str]:
        values = [f"algorithm={self.algorithm}", f"train.batch_size={self.batch_size}"]
        return values if self.k is None else [*values, f"mdgan.k={self.k}"]


@dataclass(frozen=True)
class Preset:
    name: str
    overrides: list[str]
    configurations: list[Configuration]


def load_preset(spec: str) -> Preset:
    """spec: a preset's name in conf/experiment/ or a path to a preset file."""
    path = Path(spec) if spec.endswith((".yaml", ".yml")) or Path(spec).is_file() else PRESET_DIR / f"{spec}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise ConfigError(f"no preset {spec!r}: give a path to a YAML file or one of {shipped}")
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(raw, dict) or set(raw) != {"name", "overrides", "grid"}:
        raise ConfigError(f"{path}: a preset has exactly the keys name, overrides and grid")
    name, overrides, grid = raw["name"], raw["overrides"], raw["grid"]
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"{path}: name must be a folder name, got {name!r}")
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"{path}: overrides must be a list of Hydra overrides such as data=mnist")
    if not isinstance(grid, dict) or set(grid) != set(GRID_KEYS):
        raise ConfigError(f"{path}: grid has exactly the keys {', '.join(GRID_KEYS)}")
    return Preset(name, overrides, expand(path, grid))


def expand(path: Path, grid: dict[str, Any]) -> list[Configuration]:
    """Every combination, in the preset's order, each identical configuration once."""
    algorithms = _values(path, grid, "algorithms", lambda a: a in ALGORITHMS, f"one of {', '.join(ALGORITHMS)}")
    workers = _values(path, grid, "workers", _is_positive_int, "a positive integer")
    ks = _values(path, grid, "k", lambda k: k == LOG2 or _is_positive_int(k), f"a positive integer or {LOG2}")
    batch_sizes = _values(path, grid, "batch_sizes", _is_positive_int, "a positive integer")
    found = []
    for algorithm in algorithms:
        for n in [None] if algorithm == "standalone" else workers:
            for k in [_resolve_k(path, k, n) for k in ks] if algorithm == "mdgan" else [None]:
                found.extend(Configuration(algorithm, b, n, k) for b in batch_sizes)
    return list(dict.fromkeys(found))


def _resolve_k(path: Path, value: int | str, workers: int) -> int:
    k = resolved_k(MDGANConfig(k=None if value == LOG2 else value), workers)
    if k > workers:
        raise ConfigError(f"{path}: k={value} is larger than N={workers}: MD-GAN needs 1 <= k <= N")
    return k


def _values(path: Path, grid: dict[str, Any], key: str, valid: Callable[[Any], bool], expected: str) -> list[Any]:
    values = grid[key]
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{path}: grid.{key} must be a non-empty list")
    for value in values:
        if not valid(value):
            raise ConfigError(f"{path}: grid.{key} holds {value!r}, expected {expected}")
    return values


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
