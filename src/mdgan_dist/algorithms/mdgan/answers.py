"""The server's check of the workers' answers before G's step: each packet arrived whole, and its
statistics (the losses) and feedback are finite (the non-finite guard, server side)."""

from __future__ import annotations

from mdgan_dist.algorithms.finite import all_finite
from mdgan_dist.algorithms.mdgan.message import FeedbackMessage
from mdgan_dist.algorithms.mdgan.roster import Roster
from mdgan_dist.distributed.protocol import Feedback
from mdgan_dist.distributed.transport import Transport
from mdgan_dist.errors import NonFiniteError, PeerError


def usable_answers(
    transport: Transport, roster: Roster, iteration: int, messages: dict[int, FeedbackMessage], answers: list[Feedback]
) -> tuple[list[int], list[Feedback]]:
    """The answering ranks (messages, in rank order) and their answers whose feedback G's step may
    use. A worker whose answer is short or not finite ends the run (PeerError, NonFiniteError), or
    with fault.tolerate_worker_loss is dropped and its feedback left out."""
    answered, kept = list(messages), []
    # The usual case in one check: finite payloads also hold no mark of a short message.
    if all_finite([part for message in messages.values() for part in (message.statistics, message.payload)]):
        return answered, answers
    stage = f"feedback of iteration {iteration}"
    for (rank, message), answer in zip(messages.items(), answers, strict=True):
        try:
            message.require_whole(transport, rank, stage)
        except PeerError as error:
            if not roster.tolerant:
                raise
            roster.drop({rank: error})
            continue
        quantity = None
        if not all_finite([message.statistics]):
            quantity = f"the losses reported by worker rank {rank}"
        elif not all_finite([message.payload]):  # the feedback and any verdicts
            quantity = f"the feedback of worker rank {rank}"
        if quantity is None:
            kept.append((rank, answer))
        elif roster.tolerant:
            roster.drop({rank: PeerError(0, rank, stage, f"{quantity} is not finite")})
        else:
            raise NonFiniteError(0, iteration, quantity)
    return [rank for rank, _ in kept], [answer for _, answer in kept]
