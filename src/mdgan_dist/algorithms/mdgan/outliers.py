"""mdgan.outlier_iterations: the server names a worker whose feedback lies far from that of the
other judges of its batch for that many iterations in a row (exchange.py: WATCH_OUTLIERS), and,
with fault.tolerate_worker_loss, drops its process.

A judge is an outlier in an iteration when the distance of its feedback from the coordinate-wise
median of its batch's judges' is more than OUTLIER_RATIO times the median of those distances:
honest judges of a batch scatter about the median alike, while negated, amplified or noise
feedback lands far beyond them. One far iteration proves nothing (a D just swapped in, a hard
batch), so only a streak names a worker. A free-rider whose D judges like an honest one is not
an outlier by this test: the robust rules, not the watch, bound what it can do.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from mdgan_dist.algorithms.aggregation import Judgements, judges_by_batch, stacked

log = logging.getLogger(__name__)

OUTLIER_RATIO = 3.0
FEWEST_JUDGES = 3  # a batch with fewer has no median to stray from


def distance_ratios(judged: Judgements) -> dict[int, float]:
    """Every judge (position in judged.feedbacks) of a batch with FEWEST_JUDGES or more: the
    distance of its feedback from its batch's median feedback over the median judge's."""
    ratios = {}
    for batch, judges in judges_by_batch(judged).items():
        if len(judges) < FEWEST_JUDGES:
            continue
        distances = (stacked(judged, judges) - judged.medians[batch]).flatten(1).norm(dim=1)
        scale = float(distances.median().clamp(min=torch.finfo(distances.dtype).tiny))
        ratios.update({judge: distance / scale for judge, distance in zip(judges, distances.tolist(), strict=True)})
    return ratios


def outlying(ratios: dict[int, float]) -> dict[int, float]:
    """Of an iteration's distance_ratios, the judges that are outliers, each with its ratio."""
    return {judge: ratio for judge, ratio in ratios.items() if ratio > OUTLIER_RATIO}


class OutlierWatch:
    """The streak of outlying iterations of each worker, named (rank, slot), and whom it named."""

    def __init__(self, iterations: int) -> None:
        self.iterations = iterations
        self.streaks: dict[tuple[int, int], int] = {}
        self.named: list[tuple[int, int]] = []
        self.largest = 0.0  # the last observed iteration's largest distance ratio: how far from naming

    def scalars(self) -> dict[str, float]:
        """What the server logs of the watch each iteration (metrics.jsonl, tensorboard)."""
        return {"workers_named": len(self.named), "outlier_ratio_max": self.largest}

    def state_dict(self) -> dict[str, Any]:
        """In the server's checkpoint, so that a resumed run names a worker when an uninterrupted
        one does, and never twice: plain lists, as checkpoint.load reads them."""
        return {
            "streaks": [[rank, slot, streak] for (rank, slot), streak in self.streaks.items()],
            "named": [[rank, slot] for rank, slot in self.named],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.streaks = {(rank, slot): streak for rank, slot, streak in state["streaks"]}
        self.named = [(rank, slot) for rank, slot in state["named"]]

    def observe(self, ranks: list[int], judged: Judgements, iteration: int, per_rank: int, dropping: bool) -> list[int]:
        """ranks: the processes whose feedback `judged` holds, each its per_rank workers' in slot
        order. Logs each worker named in this iteration, why, and whether its process is dropped;
        returns their ranks."""
        ratios = distance_ratios(judged)
        self.largest = max(ratios.values(), default=0.0)
        far = outlying(ratios)
        named = []
        for position, worker in enumerate((rank, slot) for rank in ranks for slot in range(per_rank)):
            self.streaks[worker] = self.streaks.get(worker, 0) + 1 if position in far else 0
            if self.streaks[worker] < self.iterations or worker in self.named:
                continue
            self.named.append(worker)
            named.append(worker[0])
            rank, slot = worker
            log.warning(
                "worker %d (rank %d, slot %d) named at iteration %d: its feedback lay %.1f x the median judge's "
                "distance from the median feedback of its batch, %d iterations in a row (mdgan.outlier_iterations)%s",
                (rank - 1) * per_rank + slot,
                rank,
                slot,
                iteration,
                far[position],
                self.iterations,
                "; dropping its process" if dropping else "",
            )
        return sorted(set(named))
