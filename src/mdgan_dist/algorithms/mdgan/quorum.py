"""mdgan.quorum: G steps on the first answers of an iteration; the workers still computing are
late, their feedback received and dropped before they get new batches (exchange.py: AWAIT_QUORUM,
COLLECT_LATE)."""

from __future__ import annotations

from mdgan_dist.algorithms.mdgan.roster import Roster
from mdgan_dist.distributed.transport import Posted, Transport


class Quorum:
    def __init__(self, transport: Transport, roster: Roster, size: int) -> None:
        self.transport = transport
        self.roster = roster
        self.size = size
        self.late: dict[int, Posted] = {}  # rank -> the iteration's transfers its feedback is in
        self.discarded = 0

    def await_first(self, posted: Posted) -> list[int]:
        """The first `size` ranks to answer; the others become late."""
        answered = self.transport.wait_any(posted, self.size)
        for rank in posted.open:
            self.late[rank] = posted
        return answered

    def collect_late(self, everyone: bool) -> None:
        """Receives, and discards, the late feedback that has arrived; waits for more when fewer
        than a quorum of workers are free, or for all of it when everyone must be (a control
        message follows)."""
        for posted in {id(posted): posted for posted in self.late.values()}.values():
            self.forget(self.transport.ready(posted))
        free = len(self.roster.live) - len(self.late)
        for rank, posted in list(self.late.items()):
            if not everyone and free >= self.size:
                break
            self.forget(self.transport.wait_any(posted, 1, peers=[rank]))
            free += 1

    def forget(self, ranks: list[int]) -> None:
        for rank in ranks:
            del self.late[rank]
            self.discarded += 1
