"""An FL-GAN worker (rank n+1): a whole GAN on its own shard, averaged with the others on order."""

from __future__ import annotations

import torch

from mdgan_dist.algorithms.fault import crash_if_scheduled, diverge_if_scheduled, straggle_if_scheduled
from mdgan_dist.algorithms.flat_state import flatten, unflatten_into
from mdgan_dist.algorithms.flgan.averaging import model_tensors
from mdgan_dist.algorithms.handshake import answer_server
from mdgan_dist.algorithms.local import LocalGAN
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.algorithms.worker_checkpoint import WorkerCheckpoints
from mdgan_dist.distributed.protocol import (
    AveragedModels,
    Checkpoint,
    LocalLosses,
    LocalModels,
    Message,
    Stop,
    SyncOrder,
    Train,
)
from mdgan_dist.resources import ComputeClock, write_peer_stats
from mdgan_dist.seeding import generator


class FLGANWorker:
    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx
        self.transport = ctx.transport
        rank = self.transport.rank
        worker = rank - 1
        shard = ctx.shard(worker)
        self.shard_size = len(shard[0])
        noise = generator(ctx.cfg.train.seed, "noise", worker)
        self.gan = LocalGAN(
            ctx.cfg, ctx.image_shape, ctx.num_classes, shard, worker, noise, ctx.device, rank, ctx.plan.class_weights
        )
        self.tensors = model_tensors(self.gan.generator, self.gan.discriminator)
        self.average = torch.empty(sum(t.numel() for t in self.tensors), device=ctx.device)
        # Its local GAN (models, Adam states, sampler, augmentation and noise streams) is all it keeps.
        self.checkpoints = WorkerCheckpoints(ctx, self.gan)
        faults = ctx.faults
        self.kill_at = faults.kills.get(rank)
        self.slow = faults.slow.get(rank)
        self.nan_at = faults.nans.get(rank)
        self.compute_clock = ComputeClock()  # the local GAN iterations: the worker's training compute

    def run(self) -> None:
        self.checkpoints.resume(answer_server(self.ctx, self.shard_size))
        instruction = self.transport.empty_header()
        while not isinstance(order := self.next_order(instruction), Stop):
            if isinstance(order, Train):
                self.train_iteration(order.iteration)
            elif isinstance(order, SyncOrder):
                self.synchronise(order.iteration)
            else:
                assert isinstance(order, Checkpoint)
                self.checkpoints.write(order.iteration)
        write_peer_stats(
            self.ctx.run_dir, "flgan worker", self.transport, compute_cpu_seconds=self.compute_clock.seconds
        )
        if order.finished:  # not a stop request
            # The run ended with an averaging: these equal the server's models.
            models = {
                "generator": self.gan.generator.state_dict(),
                "discriminator": self.gan.discriminator.state_dict(),
            }
            torch.save(models, self.ctx.run_dir / f"models_rank{self.transport.rank}.pt")

    def next_order(self, instruction: torch.Tensor) -> Message:
        stage = "waiting for the server's next instruction"
        # The server may be waiting for a slower worker's local iteration or model first.
        self.transport.exchange(stage, recvs=[(0, instruction)], patience=2)
        return self.transport.expect(instruction, 0, stage, Train, SyncOrder, Checkpoint, Stop, numel=0)

    def train_iteration(self, iteration: int) -> None:
        """One local iteration, reported to the server with its losses."""
        rank = self.transport.rank
        crash_if_scheduled(self.kill_at, rank, iteration)
        diverge_if_scheduled(self.nan_at, rank, iteration, self.gan.poison)
        with self.compute_clock:
            d_loss, g_loss = self.gan.iteration(iteration)
        straggle_if_scheduled(self.slow)
        done = self.transport.header(LocalLosses(iteration, d_loss, g_loss))
        self.transport.exchange(f"reporting iteration {iteration}", sends=[(0, done)])

    def synchronise(self, iteration: int) -> None:
        """Sends G and D, and takes the server's weighted average in their place."""
        outgoing = flatten(self.tensors, self.transport.device)
        header_out = self.transport.header(LocalModels(iteration, outgoing.numel()))
        header_in = self.transport.empty_header()
        stage = f"model averaging after iteration {iteration}"
        self.transport.exchange(
            stage, sends=[(0, header_out), (0, outgoing)], recvs=[(0, header_in), (0, self.average)], patience=2
        )
        self.transport.expect(header_in, 0, stage, AveragedModels, iteration=iteration, numel=self.average.numel())
        unflatten_into(self.tensors, self.average)
