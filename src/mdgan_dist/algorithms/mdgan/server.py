"""The MD-GAN server (rank 0): generate k batches, hand them out, aggregate the feedback, step G."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mdgan_dist.algorithms.aggregation import AGGREGATIONS, Judgements
from mdgan_dist.algorithms.components import label_classes
from mdgan_dist.algorithms.ema import GeneratorAverage
from mdgan_dist.algorithms.mdgan.answers import usable_answers
from mdgan_dist.algorithms.mdgan.class_sets import post_class_sets, read_class_sets
from mdgan_dist.algorithms.mdgan.compute import GeneratorCompute
from mdgan_dist.algorithms.mdgan.exchange import Act, Action, framed, server_actions, worker_actions
from mdgan_dist.algorithms.mdgan.message import FEEDBACK, TRAINING, BatchMessage, FeedbackMessage, wire_dtype
from mdgan_dist.algorithms.mdgan.outliers import OutlierWatch
from mdgan_dist.algorithms.mdgan.quorum import Quorum
from mdgan_dist.algorithms.mdgan.roster import Roster
from mdgan_dist.algorithms.mdgan.round import Round
from mdgan_dist.algorithms.mdgan.schedule import control_after, feedback_batch, swap_orders, swap_period, training_batch
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.algorithms.training import Report, Schedule
from mdgan_dist.algorithms.workers import Workers
from mdgan_dist.config import resolved_k
from mdgan_dist.distributed.protocol import Feedback, Stop, Train
from mdgan_dist.errors import PeerError
from mdgan_dist.privacy_ledger import ledger_for

log = logging.getLogger(__name__)


class Server:
    """MD-GAN's server in the training loop (algorithms/loop.py): a step is a round of the paper's
    Algorithm 1, as exchange.server_actions; its state is G's (GeneratorCompute) and the swaps'."""

    name = "MD-GAN"
    role = "mdgan server"

    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.cfg
        self.transport = transport = ctx.transport
        per_rank = cfg.mdgan.workers_per_rank
        k = resolved_k(cfg.mdgan, ctx.num_workers)
        self.roster = Roster(ctx.num_workers // per_rank, per_rank, k, cfg.fault.tolerate_worker_loss)
        # Tolerating lost workers, a wait lasts 2 x timeout_s: a worker may first spend one on a silent swap partner.
        self.workers = Workers(transport, self.roster, patience=2 if self.roster.tolerant else 1)
        workers = self.roster.live
        self.compute = GeneratorCompute(
            cfg, ctx.image_shape, ctx.num_classes, self.roster.k, ctx.device, ctx.plan.class_weights
        )
        self.rule = AGGREGATIONS[cfg.mdgan.aggregate]
        self.class_sets: dict[int, list[frozenset[int]]] = {}  # rank -> per slot, the classes its shard holds
        batch, dtype, wire = cfg.train.batch_size, wire_dtype(cfg.comm.dtype), transport.wire
        classes = label_classes(cfg, ctx.num_classes)
        # Packets are allocated once; two per worker and direction: with mdgan.overlap one fills as one travels.
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
        # How each worker receives its next message (exchange.py): a bare header after the handshake.
        self.expecting = dict.fromkeys(workers, Act.RECEIVE_ORDER)
        self.quorum = Quorum(transport, self.roster, cfg.mdgan.quorum or len(workers))
        self.swaps = 0
        self.period: int | None = None  # iterations between swaps, once the shards are known
        self.watch = OutlierWatch(cfg.mdgan.outlier_iterations) if cfg.mdgan.outlier_iterations else None
        self.rounds: dict[int, Round] = {}  # generated and not yet stepped: this iteration's, the next one's
        self.ledger = ledger_for(cfg, ctx.plan.shard_sizes, ctx.run_dir)  # privacy.*: the D steps released

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
        workers, processes = self.roster.workers, len(self.roster.live)
        layout = f"{workers} worker{'' if workers == 1 else 's'} on {processes} process{'' if processes == 1 else 'es'}"
        swaps = f"swap every {self.period} iterations" if self.period else "no swaps"
        log.info("%s, their shard sizes %s, k=%d, %s", layout, shard_sizes, self.roster.k, swaps)

    def step(self, iteration: int, schedule: Schedule) -> Report:
        late_before = self.quorum.discarded
        ahead = self.rounds.get(iteration)  # sent during the last iteration (mdgan.overlap)
        control = ahead.control if ahead else control_after(iteration, schedule, self.cfg, self.period)
        overlap = self.cfg.mdgan.overlap
        actions = server_actions(
            iteration,
            sent_ahead=ahead is not None,
            control=control,
            next_control=overlap and not control and control_after(iteration + 1, schedule, self.cfg, self.period),
            overlap=overlap,
            quorum=bool(self.cfg.mdgan.quorum),
            swap=bool(self.period and (iteration + 1) % self.period == 0),
            watch=self.watch is not None,
        )
        for action in actions:
            self.perform(action, schedule)
        done = self.rounds.pop(iteration)
        reported = [self.incoming[rank][iteration % 2].reported() for rank in done.answered]
        scalars = {
            "swaps": self.swaps,
            "feedbacks_late": self.quorum.discarded - late_before,
            **({} if self.watch is None else self.watch.scalars()),
            **({} if self.ledger is None else self.ledger.scalars(iteration + 1)),
            **done.timings(self.roster.per_rank),
        }
        return Report(
            d_losses=[loss for worker in reported for loss in worker["d_loss"]],
            g_losses=[loss for worker in reported for loss in worker["g_loss"]],
            scalars=scalars,
            lists=done.ranks() if self.quorum.size < len(self.outgoing) else None,
        )

    def perform(self, action: Action, schedule: Schedule) -> None:
        """One action of the server's schedule (exchange.Act says what each does)."""
        iteration = action.iteration
        match action.act:
            case Act.GENERATE:
                self.rounds[iteration] = self.generate(
                    iteration, control_after(iteration, schedule, self.cfg, self.period), action.stale
                )
            case Act.COLLECT_LATE:
                self.quorum.collect_late(everyone=action.everyone)
            case Act.SEND_BATCHES:
                self.send_batches(self.rounds[iteration])
            case Act.AWAIT_FEEDBACK:
                self.await_feedback(self.rounds[iteration])
            case Act.AWAIT_QUORUM:
                self.await_quorum(self.rounds[iteration])
            case Act.CHECK_FEEDBACK:
                self.check_feedback(self.rounds[iteration])
            case Act.WATCH_OUTLIERS:
                self.watch_outliers(self.rounds[iteration])
            case Act.STEP_GENERATOR:
                self.step_generator(self.rounds[iteration])
            case Act.ORDER_SWAP:
                self.order_swap(iteration)
            case _:
                raise ValueError(f"{action} is not a server action")

    def conclude(self, done: int) -> None:
        """Nothing: MD-GAN's last iteration ends as any other."""

    def state_dict(self) -> dict[str, Any]:
        outliers = None if self.watch is None else self.watch.state_dict()
        return {**self.compute.state_dict(), "swaps": self.swaps, "outliers": outliers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.compute.load_state_dict(state)
        self.swaps = state["swaps"]
        if self.watch is not None and "outliers" in state:  # a checkpoint from before it was kept: fresh streaks
            self.watch.load_state_dict(state["outliers"])

    def stats(self) -> dict[str, float | int | None]:
        named = 0 if self.watch is None else len(self.watch.named)
        return {"swaps": self.swaps, "feedbacks_late": self.quorum.discarded, "workers_named": named}

    def save_final(self, run_dir: Path) -> None:
        """Nothing besides generator.pt: each worker writes its discriminators."""

    def generate(self, iteration: int, control: bool, stale: bool) -> Round:
        """GENERATE: G's k batches, copied into every worker's packet; stale: made through a copy
        of G's parameters (mdgan.overlap, GeneratorCompute.generate)."""
        started = time.perf_counter()
        k = self.roster.k
        generated = self.compute.generate(stale)
        samples, labels = generated.batches.detach(), generated.labels
        for rank in self.roster.live:
            message = self.outgoing[rank][iteration % 2]
            for slot, worker in enumerate(self.roster.positions(rank)):
                for row, index in ((TRAINING, training_batch(worker, k)), (FEEDBACK, feedback_batch(worker, k))):
                    message.put(slot, row, samples[index], None if labels is None else labels[index])
        return Round(iteration, generated, control, time.perf_counter() - started)

    def send_batches(self, batches: Round) -> None:
        """SEND_BATCHES: the TRAIN to every worker that is not late, and their feedback's receives."""
        k, parity = self.roster.k, batches.iteration % 2
        train = Train(batches.iteration, batches.control, self.batch_numel)
        if self.ledger is not None:  # privacy.*: the D steps it starts, counted before they are
            self.ledger.release(batches.iteration)
        sends, recvs = [], []
        for rank in self.roster.live:
            if rank in self.quorum.late:
                continue
            packet = self.outgoing[rank][parity]
            sends += framed(rank, train, packet, self.expecting[rank], self.transport)
            self.expecting[rank] = worker_actions(train)[-1].act
            self.incoming[rank][parity].arm()
            recvs.append((rank, self.incoming[rank][parity].buffer))
            batches.assignment[rank] = [feedback_batch(worker, k) for worker in self.roster.positions(rank)]
        batches.posted = self.transport.post(f"training iteration {batches.iteration}", sends, recvs)

    def await_feedback(self, batches: Round) -> None:
        """AWAIT_FEEDBACK: every worker's answer (one that fails is dropped with
        fault.tolerate_worker_loss)."""
        assert batches.posted is not None
        started = time.perf_counter()
        self.workers.wait(batches.posted)
        batches.answered = [rank for rank in self.roster.live if rank in batches.assignment]
        batches.wait_seconds = time.perf_counter() - started

    def await_quorum(self, batches: Round) -> None:
        """AWAIT_QUORUM: the first mdgan.quorum answers; the workers still computing become late."""
        assert batches.posted is not None
        if self.quorum.size >= len(batches.assignment):  # no more were free: every one of them
            self.await_feedback(batches)
            return
        started = time.perf_counter()
        batches.answered = self.quorum.await_first(batches.posted)
        batches.wait_seconds = time.perf_counter() - started

    def check_feedback(self, batches: Round) -> None:
        """CHECK_FEEDBACK: each answer a whole, finite FEEDBACK of this iteration and size
        (answers.usable_answers: a worker whose answer is not is dropped or ends the run)."""
        stage, iteration = f"feedback of iteration {batches.iteration}", batches.iteration
        messages = {rank: self.incoming[rank][iteration % 2] for rank in batches.answered}
        answers = [
            self.transport.expect(message.header, rank, stage, Feedback, iteration=iteration, numel=self.feedback_numel)
            for rank, message in messages.items()
        ]
        batches.answered, batches.answers = usable_answers(self.transport, self.roster, iteration, messages, answers)

    def watch_outliers(self, batches: Round) -> None:
        """WATCH_OUTLIERS: names a worker whose feedback kept lying far off (outliers.py); with
        fault.tolerate_worker_loss its process is dropped, told to stop, and its feedback left out."""
        assert self.watch is not None
        roster, iteration, answered = self.roster, batches.iteration, batches.answered
        named = self.watch.observe(answered, self.judgements(batches), iteration, roster.per_rank, roster.tolerant)
        if not (named and roster.tolerant):
            return
        stage = f"outlier watch at iteration {iteration}"
        roster.drop({rank: PeerError(0, rank, stage, "its feedback kept lying far off") for rank in named})
        batches.answered = [rank for rank in answered if rank not in named]
        batches.judged = None  # G's step takes the others' feedback only
        stop = Stop(iteration + 1, finished=False)  # it ends as at a stop request, without final files
        packets = {rank: self.outgoing[rank][(iteration + 1) % 2] for rank in named}
        sends = [
            item for rank in named for item in framed(rank, stop, packets[rank], self.expecting[rank], self.transport)
        ]
        self.transport.wait(self.transport.post(stage, sends), tolerate=True)

    def step_generator(self, batches: Round) -> None:
        """STEP_GENERATOR: the used feedback aggregated by mdgan.aggregate, G's backward and step."""
        started = time.perf_counter()
        self.compute.step(batches.generated, self.judgements(batches), batches.iteration + 1)
        batches.backward_seconds = time.perf_counter() - started

    def judgements(self, batches: Round) -> Judgements:
        """What the workers whose feedback G's step uses sent, judge by judge (rank, then slot), in
        float32 on the device, with what the aggregation rule needs besides the feedback; built
        once for the outlier watch and G's step (Judgements keeps what both compute)."""
        if batches.judged is not None:
            return batches.judged
        answered = batches.answered
        device, messages = self.ctx.device, [self.incoming[rank][batches.iteration % 2] for rank in answered]

        def per_judge(values: list[torch.Tensor | None]) -> list[torch.Tensor]:
            return [row.to(device, torch.float32) for rows in values if rows is not None for row in rows]

        batches.judged = Judgements(
            feedbacks=per_judge([message.feedback for message in messages]),
            batch_of=[batch for rank in answered for batch in batches.assignment[rank]],
            num_batches=self.compute.k,
            labels=batches.generated.labels,
            verdicts=per_judge([message.verdicts for message in messages]) if self.rule.verdicts else None,
            holds=[held for rank in answered for held in self.class_sets[rank]] if self.rule.class_sets else None,
            trim=self.cfg.mdgan.trim,
        )
        return batches.judged

    def order_swap(self, iteration: int) -> None:
        """ORDER_SWAP: every live worker told where its D goes and where the next one comes from."""
        orders = swap_orders(self.roster, self.cfg.train.seed, self.swaps, iteration)
        if orders:
            sends = [(rank, self.transport.header(order)) for rank, order in orders]
            self.workers.exchange(f"swap order after iteration {iteration}", sends=sends)
            self.swaps += 1
