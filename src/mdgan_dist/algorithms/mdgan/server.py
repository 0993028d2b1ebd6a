"""The MD-GAN server (rank 0): generate k batches, hand them out, aggregate the feedback, step G."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mdgan_dist.algorithms.aggregation import AGGREGATIONS, Judgements
from mdgan_dist.algorithms.components import label_classes
from mdgan_dist.algorithms.ema import GeneratorAverage
from mdgan_dist.algorithms.mdgan.answers import usable_answers
from mdgan_dist.algorithms.mdgan.class_sets import post_class_sets, read_class_sets
from mdgan_dist.algorithms.mdgan.compute import FEEDBACK, TRAINING, Generated, GeneratorCompute
from mdgan_dist.algorithms.mdgan.message import BatchMessage, FeedbackMessage, Framing, wire_dtype
from mdgan_dist.algorithms.mdgan.roster import Roster
from mdgan_dist.algorithms.mdgan.schedule import (
    control_follows,
    derangement,
    feedback_batch,
    swap_period,
    training_batch,
)
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.algorithms.training import Report, Schedule
from mdgan_dist.algorithms.workers import Workers
from mdgan_dist.config import resolved_k
from mdgan_dist.distributed.protocol import Feedback, SwapOrder, Train
from mdgan_dist.distributed.transport import Posted

log = logging.getLogger(__name__)


@dataclass
class Round:
    """One iteration's generated batches, from generation to the G step."""

    iteration: int
    generated: Generated  # the k batches with their graph (and, stale, the snapshot that made them)
    control: bool  # a control message follows this iteration
    generate_seconds: float
    assignment: dict[int, list[int]] = field(default_factory=dict)  # rank -> per slot, the batch of its feedback
    posted: Posted | None = None
    answered: list[int] = field(default_factory=list)  # the ranks whose feedback G's step used


class Server:
    """MD-GAN's server in the training loop (algorithms/loop.py): one step is one round of the
    paper's Algorithm 1, server side; its state is G's (GeneratorCompute) and the swap count."""

    name = "MD-GAN"
    role = "mdgan server"

    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.cfg
        self.transport = transport = ctx.transport
        per_rank = cfg.mdgan.workers_per_rank
        k = resolved_k(cfg.mdgan, ctx.num_workers)
        self.roster = Roster(ctx.num_workers // per_rank, per_rank, k, cfg.fault.tolerate_worker_loss)
        # With lost workers tolerated, every wait on the workers lasts 2 x timeout_s: a worker may
        # first spend timeout_s in a swap with a partner that went silent (a checkpoint order
        # follows a swap order at once).
        self.workers = Workers(transport, self.roster, patience=2 if self.roster.tolerant else 1)
        workers = self.roster.live
        self.compute = GeneratorCompute(cfg, ctx.image_shape, ctx.num_classes, self.roster.k, ctx.device)
        self.rule = AGGREGATIONS[cfg.mdgan.aggregate]
        self.class_sets: dict[int, list[frozenset[int]]] = {}  # rank -> per slot, the classes its shard holds
        batch, dtype, wire = cfg.train.batch_size, wire_dtype(cfg.comm.dtype), transport.wire
        classes = label_classes(cfg, ctx.num_classes)
        # Packets are allocated once and reused; two per worker and direction, because with
        # mdgan.overlap the next iteration's are filled while this one's are on the wire.
        self.outgoing = {
            rank: [BatchMessage(per_rank, batch, ctx.image_shape, classes, dtype, wire) for _ in range(2)]
            for rank in workers
        }
        self.incoming = {
            rank: [FeedbackMessage(per_rank, batch, ctx.image_shape, dtype, wire, self.rule.verdicts) for _ in range(2)]
            for rank in workers
        }
        self.batch_numel = self.outgoing[workers[0]][0].payload.numel()
        self.feedback_numel = self.incoming[workers[0]][0].payload.numel()
        self.framing = {rank: Framing() for rank in workers}
        self.quorum = cfg.mdgan.quorum or len(workers)
        self.late: dict[int, Posted] = {}  # mdgan.quorum: ranks whose feedback has not arrived yet
        self.late_discarded = 0
        self.swaps = 0
        self.period: int | None = None  # iterations between swaps, once the shards are known
        self.ahead: Round | None = None  # mdgan.overlap: the next iteration's batches, already sent

    @property
    def generator(self) -> nn.Module:
        return self.compute.generator

    @property
    def average(self) -> GeneratorAverage | None:
        return self.compute.average

    def start(self, shard_sizes: list[int]) -> None:
        """The class sets, if the rule needs them (told again on every start), and the swap period."""
        if self.rule.class_sets:
            posted, buffers = post_class_sets(
                self.transport, self.roster.live, self.roster.per_rank, self.ctx.num_classes
            )
            self.workers.wait(posted)
            self.class_sets = read_class_sets(self.transport, buffers, self.roster.live)
        # Every rank derived the same shards (job.plan_data); the handshake gave each process's total.
        self.period = swap_period(
            self.ctx.plan.shard_sizes, self.cfg.train.batch_size, self.cfg.mdgan.swap_every_epochs
        )
        log.info(
            "%d workers on %d processes, their shard sizes %s, k=%d, swap every %s iterations",
            self.roster.workers,
            len(self.roster.live),
            shard_sizes,
            self.roster.k,
            self.period,
        )

    def step(self, iteration: int, schedule: Schedule) -> Report:
        late_before = self.late_discarded
        current = self.ahead or self.send(self.generate(iteration, schedule))
        self.ahead = None
        if self.cfg.mdgan.overlap and not current.control:
            # Sent while the workers compute on this iteration: made by G before this
            # iteration's step, a one-step staleness.
            self.ahead = self.send(self.generate(iteration + 1, schedule, stale=True))
        d_losses, g_losses, timings = self.finish(current)
        if self.period and (iteration + 1) % self.period == 0:
            self.order_swap(iteration)
        scalars = {"swaps": self.swaps, "feedbacks_late": self.late_discarded - late_before, **timings}
        return Report(d_losses, g_losses, scalars, self.ranks_of(current))

    def conclude(self, done: int) -> None:
        """Nothing: MD-GAN's last iteration ends as any other."""

    def state_dict(self) -> dict[str, Any]:
        return {**self.compute.state_dict(), "swaps": self.swaps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.compute.load_state_dict(state)
        self.swaps = state["swaps"]

    def stats(self) -> dict[str, float | int | None]:
        return {"swaps": self.swaps, "feedbacks_late": self.late_discarded}

    def save_final(self, run_dir: Path) -> None:
        """Nothing besides generator.pt: each worker writes its discriminators."""

    def generate(self, iteration: int, schedule: Schedule, stale: bool = False) -> Round:
        """G's k batches of one iteration, copied into every worker's packet; stale: made through
        a copy of G's parameters (mdgan.overlap, GeneratorCompute.generate)."""
        started = time.perf_counter()
        cfg, k = self.cfg, self.roster.k
        generated = self.compute.generate(stale)
        samples, labels = generated.batches.detach(), generated.labels
        for rank in self.roster.live:
            message = self.outgoing[rank][iteration % 2]
            for slot, worker in enumerate(self.roster.positions(rank)):
                for row, index in ((TRAINING, training_batch(worker, k)), (FEEDBACK, feedback_batch(worker, k))):
                    message.put(slot, row, samples[index], None if labels is None else labels[index])
        # Asked as the iteration is sent: the workers learn from it whether a control message follows.
        control = schedule.stops_after(iteration) or control_follows(
            iteration + 1, cfg.train.iterations, self.period, cfg.checkpoint.every
        )
        return Round(iteration, generated, control, time.perf_counter() - started)

    def send(self, batches: Round) -> Round:
        """Posts the batches to every worker that is not late, and the receives of their feedback."""
        self.take_late_feedback(everyone=batches.control)
        k, parity = self.roster.k, batches.iteration % 2
        train = Train(batches.iteration, batches.control, self.batch_numel)
        sends, recvs = [], []
        for rank in self.roster.live:
            if rank in self.late:
                continue
            sends += self.framing[rank].send_train(rank, train, self.outgoing[rank][parity], self.transport)
            self.incoming[rank][parity].arm()
            recvs.append((rank, self.incoming[rank][parity].buffer))
            batches.assignment[rank] = [feedback_batch(worker, k) for worker in self.roster.positions(rank)]
        batches.posted = self.transport.post(f"training iteration {batches.iteration}", sends, recvs)
        return batches

    def finish(self, batches: Round) -> tuple[list[float], list[float], dict[str, float]]:
        """Waits for the feedback (all of it, or mdgan.quorum answers), aggregates it, steps G.

        Returns the answering workers' D and G losses (each worker's, in rank then slot order), and
        where the iteration's time went."""
        assert batches.posted is not None
        started = time.perf_counter()
        if self.quorum < len(batches.assignment):
            answered = self.transport.wait_any(batches.posted, self.quorum)
            for rank in batches.posted.open:
                self.late[rank] = batches.posted
        else:
            self.workers.wait(batches.posted)
            answered = [rank for rank in self.roster.live if rank in batches.assignment]
        waited = time.perf_counter() - started
        stage, parity = f"feedback of iteration {batches.iteration}", batches.iteration % 2
        answers = [
            self.transport.expect(
                self.incoming[rank][parity].header,
                rank,
                stage,
                Feedback,
                iteration=batches.iteration,
                numel=self.feedback_numel,
            )
            for rank in answered
        ]
        messages = {rank: self.incoming[rank][parity] for rank in answered}
        answered, answers = usable_answers(self.transport, self.roster, batches.iteration, messages, answers)
        started = time.perf_counter()
        self.compute.step(batches.generated, self.judgements(batches, answered), batches.iteration + 1)
        backward = time.perf_counter() - started
        if batches.control:  # the late feedback is in before the control message goes out
            self.take_late_feedback(everyone=True)
        worker_d = [answer.d_seconds for answer in answers]
        worker_feedback = [answer.feedback_seconds for answer in answers]
        timings = {
            "time_generate": batches.generate_seconds,
            "time_wait": waited,
            "time_backward": backward,
            "time_worker_d": sum(worker_d) / len(answers),
            "time_worker_feedback": sum(worker_feedback) / len(answers),
            "time_worker_max": max(d + f for d, f in zip(worker_d, worker_feedback, strict=True)),
            "feedbacks_used": len(answered) * self.roster.per_rank,
        }
        batches.answered = answered
        used = [messages[rank] for rank in answered]
        d_losses = [loss for message in used for loss in message.statistic("d_loss")]
        g_losses = [loss for message in used for loss in message.statistic("g_loss")]
        return d_losses, g_losses, timings

    def judgements(self, batches: Round, answered: list[int]) -> Judgements:
        """What the answering workers sent, judge by judge (rank, then slot), in float32 on the
        device, with what the aggregation rule needs besides the feedback."""
        device, messages = self.ctx.device, [self.incoming[rank][batches.iteration % 2] for rank in answered]

        def per_judge(values: list[torch.Tensor | None]) -> list[torch.Tensor]:
            return [row.to(device, torch.float32) for rows in values if rows is not None for row in rows]

        return Judgements(
            feedbacks=per_judge([message.feedback for message in messages]),
            batch_of=[batch for rank in answered for batch in batches.assignment[rank]],
            num_batches=self.compute.k,
            labels=batches.generated.labels,
            verdicts=per_judge([message.verdicts for message in messages]) if self.rule.verdicts else None,
            holds=[held for rank in answered for held in self.class_sets[rank]] if self.rule.class_sets else None,
        )

    def ranks_of(self, batches: Round) -> dict[str, list[int]] | None:
        """mdgan.quorum below N: who got this iteration's batches, and whose feedback was used."""
        if self.quorum == len(self.outgoing):
            return None
        return {"sent_ranks": sorted(batches.assignment), "feedback_ranks": sorted(batches.answered)}

    def take_late_feedback(self, everyone: bool) -> None:
        """mdgan.quorum: receives, and discards, the feedback that arrived after its iteration's
        quorum; waits for it when fewer than a quorum of workers are free, or when everyone must be
        (a control message follows)."""
        for posted in {id(posted): posted for posted in self.late.values()}.values():
            self.forget_late(self.transport.ready(posted))
        free = len(self.roster.live) - len(self.late)
        for rank, posted in list(self.late.items()):
            if not everyone and free >= self.quorum:
                break
            self.forget_late(self.transport.wait_any(posted, 1, peers=[rank]))
            free += 1

    def forget_late(self, ranks: list[int]) -> None:
        for rank in ranks:
            del self.late[rank]
            self.late_discarded += 1

    def order_swap(self, iteration: int) -> None:
        """Tells every live worker where to send its D and where the next one comes from: one order
        per worker, a process's in slot order."""
        roster = self.roster
        if roster.workers < 2:
            return
        targets = derangement(roster.workers, self.cfg.train.seed, self.swaps)
        sources = {target: worker for worker, target in enumerate(targets)}
        sends = []
        for rank in roster.live:
            for worker in roster.positions(rank):
                order = SwapOrder(
                    iteration, send_to=roster.address(targets[worker]), receive_from=roster.address(sources[worker])
                )
                sends.append((rank, self.transport.header(order)))
        self.workers.exchange(f"swap order after iteration {iteration}", sends=sends)
        self.swaps += 1
