"""An MD-GAN worker process (rank r >= 1): it hosts W = mdgan.workers_per_rank workers, n = (r - 1) x W
to r x W - 1, each with its own shard and D; trains them and answers with their generator feedback."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from mdgan_dist.algorithms.aggregation import AGGREGATIONS
from mdgan_dist.algorithms.components import label_classes
from mdgan_dist.algorithms.fault import crash_if_scheduled, diverge_if_scheduled, straggle_if_scheduled
from mdgan_dist.algorithms.finite import require_finite
from mdgan_dist.algorithms.handshake import answer_server
from mdgan_dist.algorithms.mdgan.class_sets import present, send_class_sets
from mdgan_dist.algorithms.mdgan.discriminators import DiscriminatorCompute
from mdgan_dist.algorithms.mdgan.exchange import Act, Action, after_control, receive, worker_actions
from mdgan_dist.algorithms.mdgan.message import BatchMessage, FeedbackMessage, wire_dtype
from mdgan_dist.algorithms.mdgan.swap import swap_discriminators
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.algorithms.worker_checkpoint import WorkerCheckpoints
from mdgan_dist.distributed.protocol import Checkpoint, Feedback, PairGreeting, Stop, SwapOrder, Train
from mdgan_dist.errors import NonFiniteError, PeerError
from mdgan_dist.privacy import noise_multiplier, private
from mdgan_dist.resources import ComputeClock, write_peer_stats

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.cfg
        self.transport = transport = ctx.transport
        self.per_rank = per_rank = cfg.mdgan.workers_per_rank
        first = (transport.rank - 1) * per_rank
        workers = list(range(first, first + per_rank))
        shards = [ctx.shard(worker) for worker in workers]
        self.shard_size = sum(len(images) for images, _ in shards)
        self.rule = AGGREGATIONS[cfg.mdgan.aggregate]
        self.class_sets = torch.stack([present(labels, ctx.num_classes) for _, labels in shards])
        lies = [ctx.faults.lies.get((transport.rank, slot)) for slot in range(per_rank)]
        noise = noise_multiplier(cfg, ctx.plan.shard_sizes) if private(cfg) else None
        self.compute = DiscriminatorCompute(
            cfg, ctx.image_shape, ctx.num_classes, shards, workers, ctx.device, lies, noise
        )
        batch, dtype, wire = cfg.train.batch_size, wire_dtype(cfg.comm.dtype), transport.wire
        classes = label_classes(cfg, ctx.num_classes)
        self.batches = BatchMessage(per_rank, batch, ctx.image_shape, classes, dtype, wire)
        self.reply = FeedbackMessage(per_rank, batch, ctx.image_shape, dtype, wire, self.rule.verdicts)
        # D computes in float32 on the device: the received batches are used in place when they
        # are already that, else converted into this buffer.
        in_place = dtype == torch.float32 and wire == ctx.device
        self.samples = self.batches.images if in_place else torch.empty(self.batches.images.shape, device=ctx.device)
        self.holds = workers  # which D each slot holds: the worker it was born on
        faults = ctx.faults
        self.kill_at = faults.kills.get(transport.rank)
        self.slow = faults.slow.get(transport.rank)
        self.nan_at = faults.nans.get(transport.rank)
        self.checkpoints = WorkerCheckpoints(ctx, self)
        self.first = first
        self.swaps = self.swap_bytes_sent = self.swap_bytes_recv = self.iterations_trained = 0
        self.real_halves_ahead = 0  # D steps whose real half was computed while batches travelled
        self.next_train = 0  # the earliest iteration the next TRAIN may be for (require_in_order)
        self.compute_clock = ComputeClock()  # the D steps and feedback: the worker's training compute
        # The server may itself be waiting for a silent worker (timeout_s), and, with lost workers
        # tolerated, for a worker stuck in a swap with a silent partner (2 x timeout_s).
        self.server_patience = 3 if cfg.fault.tolerate_worker_loss else 2
        # mdgan.real_ahead, used only where the next message must be a TRAIN (RECEIVE_BATCHES): a
        # swap or checkpoint order would find the real half of a step that is not coming next.
        self.ahead = cfg.mdgan.real_ahead
        # A private D step's time grows with its Poisson sample: its feedback reports no seconds.
        self.reports_seconds = not private(cfg)

    def run(self) -> None:
        run_dir = self.ctx.run_dir
        start = answer_server(self.ctx, self.shard_size)
        if self.rule.class_sets:
            send_class_sets(self.transport, self.class_sets)
        self.checkpoints.resume(start)
        if self.cfg.mdgan.swap_every_epochs:
            self.warm_up_swap_pairs()
        instruction, receiving = self.transport.empty_header(), after_control(start)
        self.next_train = start
        orders = (Train, SwapOrder, Checkpoint, Stop)
        while not isinstance(
            order := receive(
                self.transport,
                receiving,
                self.batches,
                instruction,
                orders,
                self.server_patience,
                meanwhile=self.real_half_ahead if self.ahead and receiving.act == Act.RECEIVE_BATCHES else None,
            ),
            Stop,
        ):
            if isinstance(order, Train):
                self.require_in_order(order.iteration)
                *actions, receiving = worker_actions(order)
                for action in actions:
                    self.perform(action)
            elif isinstance(order, SwapOrder):  # of the iteration before the next one
                self.swap(order)
                receiving = after_control(order.iteration + 1)
            else:
                assert isinstance(order, Checkpoint)  # after `iteration` iterations
                self.checkpoints.write(order.iteration, self.holds)
                receiving = after_control(order.iteration)
        write_peer_stats(
            run_dir,
            "mdgan worker",
            self.transport,
            iterations_trained=self.iterations_trained,
            real_halves_ahead=self.real_halves_ahead,
            compute_cpu_seconds=self.compute_clock.seconds,
            swaps=self.swaps,
            swap_bytes_sent=self.swap_bytes_sent,
            swap_bytes_recv=self.swap_bytes_recv,
        )
        if order.finished:  # not a stop request
            final = run_dir / f"discriminator_rank{self.transport.rank}.pt"
            stack = self.compute.stack
            discriminators = [stack.slot_state(slot) for slot in range(stack.count)]
            torch.save({"discriminators": discriminators, "holds": self.holds}, final)

    def warm_up_swap_pairs(self) -> None:
        """Every pair of workers trades a header once before training: NCCL connects a pair on its
        first message (the first swap would pay for it), and a worker that cannot reach another
        fails here, at start, instead of at the first swap."""
        me = self.transport.rank
        others = [rank for rank in range(1, self.ctx.num_workers // self.per_rank + 1) if rank != me]
        if not others:  # a single worker swaps with nobody
            return
        inbox = {rank: self.transport.empty_header() for rank in others}
        greeting = self.transport.header(PairGreeting(me))
        stage = "warm-up of the worker pairs"
        self.transport.exchange(stage, sends=[(rank, greeting) for rank in others], recvs=list(inbox.items()))
        for rank, buffer in inbox.items():
            if self.transport.expect(buffer, rank, stage, PairGreeting).rank != rank:
                raise PeerError(me, rank, stage, "the greeting names another rank")

    def swap(self, first: SwapOrder) -> None:
        """The server's swap orders, one per slot (the first one already read), carried out."""
        orders = [first, *self.more_swap_orders(first.iteration)]
        sent, received = self.transport.bytes_sent, self.transport.bytes_recv
        tolerant = self.cfg.fault.tolerate_worker_loss
        try:
            self.holds, failures = swap_discriminators(
                self.transport,
                self.compute.stack,
                self.compute.optimizer,
                self.cfg.mdgan.swap_optimizer_state,
                orders,
                self.holds,
                tolerate=tolerant,
            )
        except PeerError as refused:  # a partner sent what the protocol does not allow
            if not tolerant:
                raise
            failures = {refused.peer: refused}
        if failures:
            # A partner died during the swap; the server drops it. Its slots keep training their D.
            for failure in failures.values():
                log.warning("%s; keeping the discriminators %s", failure, self.holds)
            return
        self.swaps += 1
        self.swap_bytes_sent += self.transport.bytes_sent - sent
        self.swap_bytes_recv += self.transport.bytes_recv - received

    def more_swap_orders(self, iteration: int) -> list[SwapOrder]:
        """The swap orders of the slots after the first, which follow it as bare headers."""
        stage = f"swap orders after iteration {iteration}"
        buffers = [self.transport.empty_header() for _ in range(self.per_rank - 1)]
        if buffers:
            self.transport.exchange(stage, recvs=[(0, buffer) for buffer in buffers])
        return [self.transport.expect(buffer, 0, stage, SwapOrder, iteration=iteration) for buffer in buffers]

    def require_finite(self, iteration: int, d_losses: list[float]) -> None:
        """The non-finite guard, worker side: each D's loss and its parameters after the steps, before
        any feedback from it leaves."""
        rank = self.transport.rank
        for slot, (loss, finite) in enumerate(zip(d_losses, self.compute.finite_slots(), strict=True)):
            require_finite([loss], rank, iteration, f"the D loss of worker {self.first + slot}")
            if not finite:
                raise NonFiniteError(rank, iteration, f"the discriminator of worker {self.first + slot}")

    def state_dict(self) -> dict[str, Any]:
        """What this process's checkpoint file holds (WorkerCheckpoints adds the RNG state)."""
        return {"holds": self.holds, **self.compute.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.holds = state["holds"]
        self.compute.load_state_dict(state)

    def perform(self, action: Action) -> None:
        """One action of the worker's schedule (exchange.Act says what each does)."""
        match action.act:
            case Act.TRAIN_DISCRIMINATORS:
                self.train_discriminators(action.iteration)
            case Act.SEND_FEEDBACK:
                self.transport.exchange(
                    f"sending the feedback of iteration {action.iteration}", sends=[(0, self.reply.buffer)]
                )
            case _:
                raise ValueError(f"{action} is not a worker action carried out after a TRAIN")

    def require_in_order(self, iteration: int) -> None:
        """A TRAIN is for a later iteration than the last one and before train.iterations: a
        server that sent one again or past the end would get D steps that no schedule gives, and
        that privacy.*'s count would not know of."""
        if not self.next_train <= iteration < self.cfg.train.iterations:
            stage, limits = (
                f"receiving a TRAIN for iteration {iteration}",
                f"{self.next_train} to {self.cfg.train.iterations - 1}",
            )
            raise PeerError(self.transport.rank, 0, stage, f"out of order: the next TRAIN may be for {limits}")
        self.next_train = iteration + 1

    def real_half_ahead(self) -> None:
        """mdgan.real_ahead: the real half of the next D step, while the next batches travel."""
        with self.compute_clock:
            self.compute.real_half_ahead(conditional=self.batches.labels is not None)
        self.real_halves_ahead += 1

    def train_discriminators(self, iteration: int) -> None:
        """TRAIN_DISCRIMINATORS: the D steps and the feedback on the batches that arrived in
        self.batches; the reply then holds the feedback, the losses and the seconds spent on each
        part."""
        crash_if_scheduled(self.kill_at, self.transport.rank, iteration)
        diverge_if_scheduled(self.nan_at, self.transport.rank, iteration, lambda: self.compute.poison(0))
        message = self.batches
        started = time.perf_counter()
        if self.samples is not message.images:
            self.samples.copy_(message.images)
        labels = None if message.labels is None else message.labels.to(self.ctx.device).long()
        prepared = time.perf_counter()
        with self.compute_clock:
            outcome = self.compute.iteration(self.samples, labels, iteration)
        self.require_finite(iteration, outcome.d_losses)
        self.reply.feedback.copy_(outcome.feedback)
        self.reply.report(d_loss=outcome.d_losses, g_loss=outcome.g_losses)
        if self.reply.verdicts is not None:
            assert outcome.verdicts is not None
            self.reply.verdicts.copy_(outcome.verdicts)
        self.iterations_trained += 1
        straggle_if_scheduled(self.slow)
        d_seconds = prepared - started + outcome.d_seconds  # since the batches came
        seconds = (d_seconds, time.perf_counter() - started - d_seconds, outcome.ahead_seconds)
        d_seconds, feedback_seconds, ahead_seconds = seconds if self.reports_seconds else (0.0, 0.0, 0.0)
        Feedback(
            iteration,
            d_seconds=d_seconds,
            feedback_seconds=feedback_seconds,
            numel=self.reply.payload.numel(),
            ahead_seconds=ahead_seconds,
        ).encode(self.reply.header)
