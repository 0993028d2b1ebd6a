"""Which workers the server still trains with, and who was dropped when (fault.tolerate_worker_loss)."""

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


class Roster:
    """The live worker processes in rank order, each hosting `per_rank` workers (its slots).

    A worker's position, (index of its rank in `live`) x per_rank + slot, is the worker index that
    the batch assignment and the swaps use; with nobody dropped it is the worker's own index."""

    def __init__(self, ranks: int, per_rank: int, k: int, tolerant: bool) -> None:
        self.live = list(range(1, ranks + 1))
        self.per_rank = per_rank
        self.configured_k = k
        self.tolerant = tolerant
        self.dropped: list[Dropped] = []

    @property
    def workers(self) -> int:
        return len(self.live) * self.per_rank

    @property
    def k(self) -> int:
        """Generated batches per iteration: the configured k while enough workers are left."""
        return min(self.configured_k, self.workers)

    def positions(self, rank: int) -> range:
        """The positions of the live process `rank`'s workers, slot by slot."""
        first = self.live.index(rank) * self.per_rank
        return range(first, first + self.per_rank)

    def address(self, position: int) -> int:
        """How a swap order names the worker at `position`: rank x per_rank + slot."""
        index, slot = divmod(position, self.per_rank)
        return self.live[index] * self.per_rank + slot

    def drop(self, failures: dict[int, PeerError]) -> None:
        """Drops the workers whose messages failed (only ever called in tolerant mode)."""
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
            log.warning("finished with %d workers; dropped: %s", len(self.live), summary)
        path.write_text(json.dumps({"live": self.live, "dropped": [asdict(d) for d in self.dropped]}, indent=2))
