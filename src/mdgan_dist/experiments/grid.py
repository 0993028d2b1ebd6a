"""Presets (conf/experiment/*.yaml) and their expansion into named trainer configurations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mdgan_dist.algorithms.registry import ALGORITHMS
from mdgan_dist.config import MDGANConfig, resolved_k
from mdgan_dist.errors import ConfigError
from mdgan_dist.experiments.paths import PRESET_DIR

LOG2 = "log2"
GRID_KEYS = ("algorithms", "workers", "k", "batch_sizes")
OPTIONAL_GRID_KEYS = ("variants", "seeds", "pack")
# What names a configuration and where it goes, and how its workers are laid out: a variant must
# not set these.
NAMING_KEYS = ("algorithm", "train.batch_size", "mdgan.k", "train.seed", "run.dir", "mdgan.workers_per_rank")


@dataclass(frozen=True)
class Configuration:
    """One point of a grid. workers is None for standalone, k is None for everything but mdgan;
    variant names a set of overrides of grid.variants; seed is None when the grid has no seeds."""

    algorithm: str
    batch_size: int
    workers: int | None = None
    k: int | None = None
    variant: str | None = None
    variant_overrides: tuple[str, ...] = ()
    seed: int | None = None
    workers_per_rank: int = 1  # MD-GAN's workers per worker process (grid.pack); not part of the name

    @property
    def group(self) -> str:
        """The name without the seed: the runs that results averages over."""
        parts = [self.algorithm]
        if self.workers is not None:
            parts.append(f"N{self.workers}")
        if self.k is not None:
            parts.append(f"k{self.k}")
        parts.append(f"b{self.batch_size}")
        return "-".join([*parts, *([self.variant] if self.variant else [])])

    @property
    def name(self) -> str:
        return self.group if self.seed is None else f"{self.group}-s{self.seed}"

    @property
    def world_size(self) -> int:
        """Processes of the run: the server and N workers (W to a process with grid.pack), or the
        one standalone process."""
        return 1 if self.workers is None else self.workers // self.workers_per_rank + 1

    def overrides(self) -> list[str]:
        values = [f"algorithm={self.algorithm}", f"train.batch_size={self.batch_size}"]
        if self.k is not None:
            values.append(f"mdgan.k={self.k}")
        if self.workers_per_rank > 1:
            values.append(f"mdgan.workers_per_rank={self.workers_per_rank}")
        values += self.variant_overrides
        return values if self.seed is None else [*values, f"train.seed={self.seed}"]


@dataclass(frozen=True)
class Preset:
    name: str
    overrides: list[str]
    configurations: list[Configuration]


def load_preset(spec: str, seeds: list[int] | None = None) -> Preset:
    """spec: a preset's name in conf/experiment/ or a path to a preset file; seeds, when given,
    replace the grid's seeds (the command line's --seeds)."""
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
    if not isinstance(grid, dict) or not set(GRID_KEYS) <= set(grid) <= {*GRID_KEYS, *OPTIONAL_GRID_KEYS}:
        raise ConfigError(
            f"{path}: grid has the keys {', '.join(GRID_KEYS)}, and may have {' and '.join(OPTIONAL_GRID_KEYS)}"
        )
    return Preset(name, overrides, expand(path, grid if seeds is None else {**grid, "seeds": seeds}))


def expand(path: Path, grid: dict[str, Any]) -> list[Configuration]:
    """Every combination, in the preset's order (seeds innermost), each identical configuration once."""
    algorithms = _values(path, grid, "algorithms", lambda a: a in ALGORITHMS, f"one of {', '.join(ALGORITHMS)}")
    workers = _values(path, grid, "workers", _is_positive_int, "a positive integer")
    ks = _values(path, grid, "k", lambda k: k == LOG2 or _is_positive_int(k), f"a positive integer or {LOG2}")
    batch_sizes = _values(path, grid, "batch_sizes", _is_positive_int, "a positive integer")
    variants = _variants(path, grid.get("variants"))
    seeds = [None] if "seeds" not in grid else _values(path, grid, "seeds", _is_seed, "a seed (an integer >= 0)")
    pack = grid.get("pack", 1)
    if not _is_positive_int(pack):
        raise ConfigError(f"{path}: grid.pack holds {pack!r}, expected a positive integer (workers per process)")
    found: list[Configuration] = []
    for algorithm in algorithms:
        for n, k in _workers_and_k(path, algorithm, workers, ks):
            per_rank = packing(n, pack) if algorithm == "mdgan" and n is not None else 1
            for b in batch_sizes:
                for variant, changes in variants.items():
                    found.extend(Configuration(algorithm, b, n, k, variant, changes, seed, per_rank) for seed in seeds)
    return list(dict.fromkeys(found))


def packing(workers: int, pack: int) -> int:
    """grid.pack: MD-GAN's N workers W to a worker process (mdgan.workers_per_rank), W the largest
    divisor of N up to pack; FL-GAN's workers each train a whole GAN and are never packed."""
    return max(w for w in range(1, min(workers, pack) + 1) if workers % w == 0)


def _workers_and_k(
    path: Path, algorithm: str, workers: list[int], ks: list[int | str]
) -> list[tuple[int | None, int | None]]:
    """The (N, k) points of one algorithm, N outermost: standalone has neither, only mdgan has k."""
    if algorithm == "standalone":
        return [(None, None)]
    if algorithm != "mdgan":
        return [(n, None) for n in workers]
    return [(n, _resolve_k(path, k, n)) for n in workers for k in ks]


def _variants(path: Path, raw: Any) -> dict[str | None, tuple[str, ...]]:
    """grid.variants: a name -> its Hydra overrides, e.g. {lr1e-4: [optim.g_lr=1e-4]}; none: one
    configuration without a variant."""
    if raw is None:
        return {None: ()}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: grid.variants must map names to lists of overrides, e.g. lr1e-4: [optim.g_lr=1e-4]")
    variants: dict[str | None, tuple[str, ...]] = {}
    for name, changes in raw.items():
        if not isinstance(name, str) or not name or any(c in name for c in "/ "):
            raise ConfigError(f"{path}: grid.variants has the name {name!r}: use a folder name without spaces")
        if not isinstance(changes, list) or not all(isinstance(change, str) and "=" in change for change in changes):
            raise ConfigError(f"{path}: grid.variants.{name} must be a list of overrides such as optim.g_lr=1e-4")
        for change in changes:
            if change.split("=", 1)[0].lstrip("+~") in NAMING_KEYS:
                raise ConfigError(
                    f"{path}: grid.variants.{name} sets {change}: {', '.join(NAMING_KEYS)} come from the grid's "
                    "other keys (algorithms, batch_sizes, k, seeds) and the runner"
                )
        variants[name] = tuple(changes)
    return variants


def _resolve_k(path: Path, value: int | str, workers: int) -> int:
    k = resolved_k(MDGANConfig(k=None if isinstance(value, str) else value), workers)  # the only str is LOG2
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


def _is_seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
