"""An MD-GAN worker (rank n+1): train D_n on its own shard, answer with the generator's feedback."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import torch

from mdgan_dist.algorithms.components import label_classes
from mdgan_dist.algorithms.handshake import answer_server
from mdgan_dist.algorithms.mdgan.compute import DiscriminatorCompute
from mdgan_dist.algorithms.mdgan.message import BatchMessage, FeedbackMessage, Framing, wire_dtype
from mdgan_dist.algorithms.mdgan.swap import swap_discriminator
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.checkpoint import atomic_save, checkpoint_dir, find_worker_file, resume_directory, worker_file
from mdgan_dist.checkpoint import load as load_checkpoint
from mdgan_dist.config import kill_point, slow_point
from mdgan_dist.distributed.protocol import Checkpoint, Feedback, PairGreeting, Stop, SwapOrder, Train
from mdgan_dist.errors import PeerError
from mdgan_dist.resources import write_peer_stats

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.cfg
        self.transport = transport = ctx.transport
        self.worker = transport.rank - 1
        shard = ctx.shard(self.worker)
        self.shard_size = len(shard[0])
        self.compute = DiscriminatorCompute(cfg, ctx.image_shape, ctx.num_classes, shard, self.worker, ctx.device)
        batch, dtype, wire = cfg.train.batch_size, wire_dtype(cfg.comm.dtype), transport.wire
        classes = label_classes(cfg, ctx.num_classes)
        self.batches = BatchMessage(batch, ctx.image_shape, classes, dtype, wire)
        self.reply = FeedbackMessage(batch, ctx.image_shape, dtype, wire)
        # D computes in float32 on the device: the received batches are used in place when they
        # are already that, else converted into this buffer.
        in_place = dtype == torch.float32 and wire == ctx.device
        self.samples = self.batches.images if in_place else torch.empty(self.batches.images.shape, device=ctx.device)
        self.holds = self.worker  # which D this worker holds: the worker it was born on
        self.kill_at = kill_point(cfg.fault, ctx.num_workers)
        self.slow = slow_point(cfg.fault, ctx.num_workers)
        self.swaps = self.swap_bytes_sent = self.swap_bytes_recv = self.iterations_trained = 0
        # The server may itself be waiting for a silent worker (timeout_s), and, with lost workers
        # tolerated, for a worker stuck in a swap with a silent partner (2 x timeout_s).
        self.server_patience = 3 if cfg.fault.tolerate_worker_loss else 2

    def run(self) -> None:
        run_dir = self.ctx.run_dir
        start = answer_server(self.ctx, self.shard_size)
        if start > 0:
            self.load(find_worker_file(resume_directory(self.cfg, run_dir, start), self.transport.rank))
        if self.cfg.mdgan.swap_every_epochs:
            self.warm_up_swap_pairs()
        framing, instruction = Framing(), self.transport.empty_header()
        orders = (Train, SwapOrder, Checkpoint, Stop)
        while not isinstance(
            order := framing.receive(self.transport, self.batches, instruction, orders, self.server_patience), Stop
        ):
            if isinstance(order, Train):
                self.train_iteration(order.iteration)
            elif isinstance(order, SwapOrder):
                self.swap(order)
            else:
                assert isinstance(order, Checkpoint)
                self.checkpoint(order.iteration)
        write_peer_stats(
            run_dir,
            "mdgan worker",
            self.transport,
            iterations_trained=self.iterations_trained,
            swaps=self.swaps,
            swap_bytes_sent=self.swap_bytes_sent,
            swap_bytes_recv=self.swap_bytes_recv,
        )
        if order.finished:  # not a stop request
            final = run_dir / f"discriminator_rank{self.transport.rank}.pt"
            torch.save({"discriminator": self.compute.discriminator.state_dict(), "holds": self.holds}, final)

    def warm_up_swap_pairs(self) -> None:
        """Every pair of workers trades a header once before training: NCCL connects a pair on its
        first message (the first swap would pay for it), and a worker that cannot reach another
        fails here, at start, instead of at the first swap."""
        me = self.transport.rank
        others = [rank for rank in range(1, self.ctx.num_workers + 1) if rank != me]
        if not others:  # a single worker swaps with nobody
            return
        inbox = {rank: self.transport.empty_header() for rank in others}
        greeting = self.transport.header(PairGreeting(me))
        stage = "warm-up of the worker pairs"
        self.transport.exchange(stage, sends=[(rank, greeting) for rank in others], recvs=list(inbox.items()))
        for rank, buffer in inbox.items():
            if self.transport.expect(buffer, rank, stage, PairGreeting).rank != rank:
                raise PeerError(me, rank, stage, "the greeting names another rank")

    def swap(self, order: SwapOrder) -> None:
        sent, received = self.transport.bytes_sent, self.transport.bytes_recv
        try:
            self.holds = swap_discriminator(
                self.transport,
                self.compute.discriminator,
                self.compute.optimizer,
                self.cfg.mdgan.swap_optimizer_state,
                order,
                self.holds,
            )
        except PeerError as error:
            if not self.cfg.fault.tolerate_worker_loss:
                raise
            # The partner died during the swap; the server drops it. Keep training this D.
            log.warning("%s; keeping discriminator D%d", error, self.holds)
            return
        self.swaps += 1
        self.swap_bytes_sent += self.transport.bytes_sent - sent
        self.swap_bytes_recv += self.transport.bytes_recv - received

    def checkpoint(self, iteration: int) -> None:
        """Writes this worker's state, then tells the server, which writes the manifest last."""
        compute = self.compute
        state = {
            "iteration": iteration,
            "holds": self.holds,
            "discriminator": compute.discriminator.state_dict(),
            "optimizer": compute.optimizer.state_dict(),
            "sampler": compute.sampler.state_dict(),
            "augment": None if compute.augment is None else compute.augment.state_dict(),
            "rng": torch.get_rng_state(),
        }
        atomic_save(state, worker_file(checkpoint_dir(self.ctx.run_dir, iteration), self.transport.rank, self.holds))
        done = self.transport.header(Checkpoint(iteration))
        self.transport.exchange(f"checkpoint at iteration {iteration}", sends=[(0, done)])

    def load(self, path: Path) -> None:
        state = load_checkpoint(path, self.ctx.device)
        compute = self.compute
        self.holds = state["holds"]
        compute.discriminator.load_state_dict(state["discriminator"])
        compute.optimizer.load_state_dict(state["optimizer"])
        compute.sampler.load_state_dict(state["sampler"])
        if compute.augment is not None:
            compute.augment.load_state_dict(state["augment"])
        torch.set_rng_state(state["rng"])

    def train_iteration(self, iteration: int) -> None:
        """The D steps and the feedback on the batches that arrived in self.batches; the reply
        carries the feedback, the losses and the seconds spent on each part."""
        if self.kill_at == (self.transport.rank, iteration):
            log.warning("fault.kill_worker: rank %d kills itself at iteration %d", self.transport.rank, iteration)
            os.kill(os.getpid(), signal.SIGKILL)  # a real crash: no exception, no clean-up
        message = self.batches
        started = time.perf_counter()
        if self.samples is not message.images:
            self.samples.copy_(message.images)
        labels = None if message.labels is None else message.labels.to(self.ctx.device).long()
        prepared = time.perf_counter()
        outcome = self.compute.iteration(self.samples, labels)
        self.reply.feedback.copy_(outcome.feedback)
        self.iterations_trained += 1
        if self.slow is not None and self.slow[0] == self.transport.rank:
            time.sleep(self.slow[1])  # fault.slow_worker: a straggler (slow feedback), for tests and demos
        d_seconds = prepared - started + outcome.d_seconds
        Feedback(
            iteration,
            outcome.d_loss,
            outcome.g_loss,
            d_seconds=d_seconds,
            feedback_seconds=time.perf_counter() - started - d_seconds,
            numel=self.reply.payload.numel(),
        ).encode(self.reply.header)
        self.transport.exchange(f"sending the feedback of iteration {iteration}", sends=[(0, self.reply.buffer)])
