"""MD-GAN's roster: the live worker processes (algorithms/membership.py), the workers each hosts,
and how batches and swaps address them."""

from __future__ import annotations

from mdgan_dist.algorithms.membership import Membership


class Roster(Membership):
    """The live worker processes in rank order, each hosting `per_rank` workers (its slots).

    A worker's position, (index of its rank in `live`) x per_rank + slot, is the worker index that
    the batch assignment and the swaps use; with nobody dropped it is the worker's own index."""

    def __init__(self, ranks: int, per_rank: int, k: int, tolerant: bool) -> None:
        super().__init__(ranks, tolerant)
        self.per_rank = per_rank
        self.configured_k = k

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
