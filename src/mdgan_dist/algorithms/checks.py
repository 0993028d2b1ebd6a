"""Checks that several algorithms' validations share: how many processes they run on, and the
options they read."""

from __future__ import annotations

import json

from mdgan_dist.config import Config
from mdgan_dist.errors import ConfigError
from mdgan_dist.trajectory import changed_options

# The sections every algorithm reads (the training loop's checkpoint and resume among them). Of the
# others (mdgan, flgan, fault) an algorithm reads what its registry entry names.
COMMON_SECTIONS = frozenset(
    {"algorithm", "data", "model", "gan", "optim", "train", "comm", "log", "run", "checkpoint", "eval", "resume"}
)


def refuse_unread_options(cfg: Config, reads: tuple[str, ...]) -> None:
    """An option set off its default that the algorithm does not read is refused, not ignored.
    reads: beyond COMMON_SECTIONS, the sections ("mdgan") and single options ("fault.kill_worker")
    the algorithm reads."""
    allowed = COMMON_SECTIONS | set(reads)
    unread = {name: value for name, value in changed_options(cfg).items() if not {_section(name), name} & allowed}
    if not unread:
        return
    partly_read = {_section(option) for option in reads}
    # A section the algorithm reads nothing of is named whole: mdgan.* rather than mdgan.k.
    named = dict.fromkeys(name if _section(name) in partly_read else f"{_section(name)}.*" for name in unread)
    given = ", ".join(
        f"{name}={value if isinstance(value, str) else json.dumps(value)}" for name, value in unread.items()
    )
    algorithm = cfg.algorithm
    if reads:
        its = f"beyond the sections every algorithm reads, {algorithm} reads only "
        its += ", ".join(option if "." in option else f"{option}.*" for option in reads)
    else:
        its = f"{algorithm} reads only the sections every algorithm reads"
    raise ConfigError(
        f"{given} with algorithm={algorithm}: {algorithm} does not read {' or '.join(named)}; "
        f"remove {'it' if len(unread) == 1 else 'them'} ({its})"
    )


def _section(option: str) -> str:
    return option.split(".")[0]


def require_one_process(cfg: Config, world_size: int) -> None:
    if world_size != 1:
        raise ConfigError(
            f"algorithm={cfg.algorithm} runs in one process, got WORLD_SIZE={world_size}: "
            f"launch it with `python -m mdgan_dist.train algorithm={cfg.algorithm}` (or torchrun --nproc_per_node=1)"
        )


def require_workers(cfg: Config, world_size: int) -> None:
    if world_size < 2:
        raise ConfigError(
            f"algorithm={cfg.algorithm} needs at least 2 processes (1 server + 1 worker), got WORLD_SIZE={world_size}: "
            "launch with `torchrun --nproc_per_node=N+1 -m mdgan_dist.train` and N >= 1, "
            "or use algorithm=standalone for one process"
        )
