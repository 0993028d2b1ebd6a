"""The server's side of its worker processes, the same for every distributed algorithm: who is
live, the exchanges with them, their checkpoint files and the end of the run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mdgan_dist.algorithms.membership import Membership
from mdgan_dist.distributed.protocol import Checkpoint, Stop
from mdgan_dist.distributed.transport import Posted, Transfer, Transport


class Workers:
    """The live worker processes (with fault.tolerate_worker_loss, one that fails in an exchange
    is dropped: Membership) and what the server exchanges with all of them."""

    def __init__(self, transport: Transport, members: Membership, patience: int = 1) -> None:
        """patience: each wait on the workers lasts patience x comm.timeout_s."""
        self.transport = transport
        self.members = members
        self.patience = patience
        self.replies = {rank: transport.empty_header() for rank in members.live}

    @property
    def live(self) -> list[int]:
        return self.members.live

    def exchange(self, stage: str, sends: Sequence[Transfer] = (), recvs: Sequence[Transfer] = ()) -> None:
        self.wait(self.transport.post(stage, sends, recvs))

    def wait(self, posted: Posted) -> None:
        """The transport's wait; a worker that fails is dropped under fault.tolerate_worker_loss."""
        self.members.drop(self.transport.wait(posted, tolerate=self.members.tolerant, patience=self.patience))

    def checkpoint(self, done: int) -> list[int]:
        """Orders every live worker to write its file of iteration `done` (before the server writes
        its own and the manifest); returns the ranks that could not (a full disk: their logs say)."""
        stage = f"checkpoint at iteration {done}"
        order = self.transport.header(Checkpoint(done))
        live = self.live
        self.exchange(
            stage, sends=[(rank, order) for rank in live], recvs=[(rank, self.replies[rank]) for rank in live]
        )
        return [
            rank
            for rank in self.live
            if self.transport.expect(self.replies[rank], rank, stage, Checkpoint, iteration=done).failed
        ]

    def stop(self, iteration: int, finished: bool, stage: str = "stop") -> None:
        """The end: finished is false after a stop request or a failed checkpoint (no final files)."""
        order = self.transport.header(Stop(iteration, finished))
        self.exchange(stage, sends=[(rank, order) for rank in self.live])

    def write_summary(self, path: Path) -> None:
        self.members.write_summary(path)
