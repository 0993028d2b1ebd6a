"""fault.*'s injected faults, parsed once at start-up into what each rank does and when.

The specs are text on the command line ("RANK@VALUE", and lists of them for kill_worker); the
start-up checks turn them into a FaultPlan against the job's worker ranks, and the roles read
only the plan. fault.tolerate_worker_loss is a policy, not an injection: it stays a config field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mdgan_dist.config import FaultConfig, Lie
from mdgan_dist.errors import ConfigError


@dataclass(frozen=True)
class FaultPlan:
    """Per rank: worker ranks 1..N, and rank 0, the server, for checkpoint errors."""

    kills: Mapping[int, int] = field(default_factory=dict)  # fault.kill_worker: iteration of a SIGKILL
    slow: Mapping[int, float] = field(default_factory=dict)  # fault.slow_worker: seconds before each feedback
    nans: Mapping[int, int] = field(default_factory=dict)  # fault.nan_worker: iteration its D turns NaN
    # fault.checkpoint_error: iteration whose checkpoint file of this rank fails as on a full disk
    checkpoint_errors: Mapping[int, int] = field(default_factory=dict)
    # fault.byzantine_worker: how the worker in (rank, slot) lies
    lies: Mapping[tuple[int, int], Lie] = field(default_factory=dict)


def parse_faults(cfg: FaultConfig, worker_ranks: int, writing_ranks: int | None = None, slots: int = 1) -> FaultPlan:
    """The plan of fault.*, each rank checked against worker_ranks (the job's processes but the
    server), and fault.checkpoint_error's against writing_ranks (those that write a checkpoint
    file besides the server; worker_ranks when not given); slots: the workers each worker process
    hosts. Raises ConfigError naming the spec and the form it takes."""
    writers = worker_ranks if writing_ranks is None else writing_ranks
    slow = _worker_at(cfg.slow_worker, "fault.slow_worker", "SECONDS", "2@0.5", worker_ranks)
    return FaultPlan(
        kills=_kill_schedule(cfg.kill_worker, worker_ranks),
        slow={} if slow is None else {slow[0]: float(slow[1])},
        nans=_iteration_point(cfg.nan_worker, "fault.nan_worker", worker_ranks),
        checkpoint_errors=_iteration_point(cfg.checkpoint_error, "fault.checkpoint_error", writers, lowest=0),
        lies=_lies(cfg.byzantine_worker, worker_ranks, slots),
    )


def _lies(spec: object, worker_ranks: int, slots: int) -> dict[tuple[int, int], Lie]:
    """fault.byzantine_worker: one "RANK@MODE" (every worker of the process) or "RANK:SLOT@MODE"
    (the worker in that slot, 0-based, of mdgan.workers_per_rank), or a list of them; each worker once."""
    modes = ", ".join(lie.value for lie in Lie)
    lies: dict[tuple[int, int], Lie] = {}
    for entry in [] if spec is None else spec if isinstance(spec, list | tuple) else [spec]:
        worker, _, mode = str(entry).partition("@")
        rank, colon, slot = worker.partition(":")
        valid = rank.isdigit() and 1 <= int(rank) <= worker_ranks and mode in Lie.__members__
        if not (valid and (not colon or (slot.isdigit() and int(slot) < slots))):
            raise ConfigError(
                f"fault.byzantine_worker={spec}: expected RANK@MODE (every worker of the process) or RANK:SLOT@MODE "
                f"(one of its {slots} workers, slots from 0) with a worker rank in 1..{worker_ranks} and a mode "
                f"among {modes}, e.g. fault.byzantine_worker=[2@negate,3@lazy]"
            )
        for named in [int(slot)] if colon else range(slots):
            if (int(rank), named) in lies:
                raise ConfigError(
                    f"fault.byzantine_worker={spec}: the worker in rank {rank}, slot {named} is named twice; "
                    "a worker lies one way"
                )
            lies[int(rank), named] = Lie[mode]
    return lies


def _kill_schedule(spec: object, worker_ranks: int) -> dict[int, int]:
    """fault.kill_worker: one "RANK@ITERATION" or a list of them, each rank once."""
    schedule: dict[int, int] = {}
    for entry in spec if isinstance(spec, list | tuple) else [spec]:
        for rank, iteration in _iteration_point(entry, "fault.kill_worker", worker_ranks).items():
            if rank in schedule:
                raise ConfigError(
                    f"fault.kill_worker={spec}: rank {rank} is named twice; a worker dies once, "
                    "e.g. fault.kill_worker=[2@200,3@400]"
                )
            schedule[rank] = iteration
    return schedule


def _iteration_point(text: object, name: str, worker_ranks: int, lowest: int = 1) -> dict[int, int]:
    """RANK@ITERATION as {rank: iteration}; {} for no spec."""
    point = _worker_at(text, name, "ITERATION", "2@100", worker_ranks, lowest)
    return {} if point is None else {point[0]: int(point[1])}


def _worker_at(
    text: object, name: str, what: str, example: str, worker_ranks: int, lowest: int = 1
) -> tuple[int, str] | None:
    """RANK@VALUE with a rank in lowest..N (1: the workers; 0: the server too) and a non-negative
    number; None for no spec."""
    if text is None:
        return None
    rank, _, value = str(text).partition("@")
    number = value.isdigit() or (what == "SECONDS" and value.replace(".", "", 1).isdigit())
    if not (rank.isdigit() and number and lowest <= int(rank) <= worker_ranks):
        ranks = f"a worker rank in 1..{worker_ranks}" if lowest else f"a rank in 0..{worker_ranks} (0: the server)"
        raise ConfigError(f"{name}={text!r}: expected RANK@{what} with {ranks}, e.g. {name}={example}")
    return int(rank), value
