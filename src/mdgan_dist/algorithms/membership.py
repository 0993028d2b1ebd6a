"""Which worker processes a server still trains with, and who was dropped when
(fault.tolerate_worker_loss): MD-GAN's roster and FL-GAN's server build on it."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from mdgan_dist.errors import PeerError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dropped:
    rank: int
    stage: str
    cause: str


class Membership:
    """The live worker processes in rank order; with `tolerant`, failed ones are dropped."""

    def __init__(self, ranks: int, tolerant: bool) -> None:
        self.live = list(range(1, ranks + 1))
        self.tolerant = tolerant
        self.dropped: list[Dropped] = []

    @property
    def workers(self) -> int:
        """The workers the live processes host."""
        return len(self.live)

    def drop(self, failures: dict[int, PeerError]) -> None:
        """Drops the processes whose messages failed (only ever called in tolerant mode)."""
        for rank, error in sorted(failures.items()):
            self.live.remove(rank)
            self.dropped.append(Dropped(rank, error.stage, str(error)))
            log.warning(
                "dropped worker rank %d during %s: %d workers left (%s)", rank, error.stage, self.workers, error
            )
        if failures and not self.live:
            raise PeerError(0, min(failures), "training", "every worker was lost")

    def write_summary(self, path: Path) -> None:
        if self.dropped:
            summary = ", ".join(f"rank {d.rank} during {d.stage}" for d in self.dropped)
            log.warning("finished with %d workers; dropped: %s", self.workers, summary)
        path.write_text(json.dumps({"live": self.live, "dropped": [asdict(d) for d in self.dropped]}, indent=2))
