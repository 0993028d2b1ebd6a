"""One MD-GAN iteration on the server, from GENERATE to STEP_GENERATOR (exchange.py): its batches,
who got them, who answered, and where its time went."""

from __future__ import annotations

from dataclasses import dataclass, field

from mdgan_dist.algorithms.aggregation import Judgements
from mdgan_dist.algorithms.mdgan.compute import Generated
from mdgan_dist.distributed.protocol import Feedback
from mdgan_dist.distributed.transport import Posted


@dataclass
class Round:
    """One iteration's generated batches and what became of them."""

    iteration: int
    generated: Generated  # the k batches with their graph (and, stale, the snapshot that made them)
    control: bool  # a control message follows this iteration
    generate_seconds: float
    assignment: dict[int, list[int]] = field(default_factory=dict)  # rank -> per slot, the batch of its feedback
    posted: Posted | None = None
    answered: list[int] = field(default_factory=list)  # the ranks whose feedback G's step uses
    answers: list[Feedback] = field(default_factory=list)  # their FEEDBACK headers
    judged: Judgements | None = None  # their feedback as G's step takes it (Server.judgements), once built
    wait_seconds: float = 0.0
    backward_seconds: float = 0.0

    def timings(self, per_rank: int) -> dict[str, float]:
        """Where the iteration's time went, on the server and, as they report it, on the workers."""
        worker_d = [answer.d_seconds for answer in self.answers]
        worker_feedback = [answer.feedback_seconds for answer in self.answers]
        return {
            "time_generate": self.generate_seconds,
            "time_wait": self.wait_seconds,
            "time_backward": self.backward_seconds,
            "time_worker_d": sum(worker_d) / len(worker_d),
            "time_worker_feedback": sum(worker_feedback) / len(worker_feedback),
            "time_worker_max": max(d + f for d, f in zip(worker_d, worker_feedback, strict=True)),
            # mdgan.real_ahead: the real half of this iteration's D step, computed before its batches came
            "time_worker_ahead": sum(answer.ahead_seconds for answer in self.answers) / len(self.answers),
            "feedbacks_used": len(self.answered) * per_rank,
        }

    def ranks(self) -> dict[str, list[int]]:
        """mdgan.quorum below N: who got this iteration's batches, and whose feedback G's step used."""
        return {"sent_ranks": sorted(self.assignment), "feedback_ranks": sorted(self.answered)}
