"""What an algorithm plugs into the one training loop (loop.py): its state, its step, its schedule.

Every part that carries state across a checkpoint is Stateful (state_dict / load_state_dict, as
torch modules and optimizers are): the loop saves and restores whatever an algorithm's state_dict
holds, so a new algorithm checkpoints and resumes without writing either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from mdgan_dist.algorithms.ema import GeneratorAverage
from mdgan_dist.algorithms.workers import Workers
from mdgan_dist.config import Config

STOP_FILE = "STOP"  # `touch <run dir>/STOP`: checkpoint and end cleanly (launch/slurm.sbatch does it on USR1)


class Stateful(Protocol):
    """A part whose state a checkpoint holds: tensors in plain containers (checkpoint.load reads
    nothing else back)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Report:
    """What one iteration tells the loop: every answering worker's losses (one each for a single
    process), the algorithm's own scalars, and lists that go to metrics.jsonl only."""

    d_losses: list[float]
    g_losses: list[float]
    scalars: dict[str, float] = field(default_factory=dict)
    lists: dict[str, list[int]] | None = None


class Schedule:
    """Which iterations end with a checkpoint, a stop, or the run.

    A stop request (the STOP file) is read once per iteration, when that iteration is first asked
    about, and holds from then on: an algorithm that tells its workers in advance whether a control
    message follows an iteration (MD-GAN's Framing, and its batches sent one iteration ahead) asks
    when it sends the iteration, and the loop later stops exactly where the workers were told."""

    def __init__(self, cfg: Config, run_dir: Path) -> None:
        self.iterations = cfg.train.iterations
        self.every = cfg.checkpoint.every
        self.stop_file = run_dir / STOP_FILE
        self.asked = -1  # the newest iteration asked about
        self.stop_from: int | None = None  # the first iteration asked about after the request

    def stops_after(self, iteration: int) -> bool:
        """Whether the run stops (checkpointed, not finished) after this iteration (0-based)."""
        if iteration > self.asked:
            self.asked = iteration
            if self.stop_from is None and self.stop_file.exists():
                self.stop_from = iteration
        return self.stop_from is not None and iteration >= self.stop_from and iteration + 1 < self.iterations

    def checkpoints_after(self, iteration: int) -> bool:
        """Every checkpoint.every iterations, at the last one, and at a stop."""
        done = iteration + 1
        due = bool(self.every) and (done % self.every == 0 or done == self.iterations)
        return due or self.stops_after(iteration)


class Training(Stateful, Protocol):
    """An algorithm's server, or its whole single-process run, as the loop drives it. Its
    state_dict is what the server's checkpoint file holds besides the loop's own entries."""

    @property
    def name(self) -> str:
        """On the progress bar."""
        ...

    @property
    def role(self) -> str:
        """In stats_rank0.json."""
        ...

    @property
    def workers(self) -> Workers | None:
        """Its worker processes; None: it runs in one process."""
        ...

    @property
    def generator(self) -> nn.Module:
        """The raw G: what generator.pt's raw_generator holds, and raw_ scores."""
        ...

    @property
    def average(self) -> GeneratorAverage | None:
        """G's moving average, when gan.ema_halflife asks for one: what grids and scores show."""
        ...

    def start(self, shard_sizes: list[int]) -> None:
        """After the handshake (and any resume): the shard sizes the workers reported, or the
        single process's one."""
        ...

    def step(self, iteration: int, schedule: Schedule) -> Report:
        """One iteration, 0-based."""
        ...

    def conclude(self, done: int) -> None:
        """What ends a finished run, after its last checkpoint and before its last scores: nothing
        it does may change a checkpoint, since a longer run goes on from that checkpoint's state."""
        ...

    def stats(self) -> dict[str, float | int | None]:
        """Counters for stats_rank0.json."""
        ...

    def save_final(self, run_dir: Path) -> None:
        """The final files besides generator.pt, which the loop writes."""
        ...
