"""An FL-GAN worker (rank n+1): a whole GAN on its own shard, averaged with the others on order."""

from __future__ import annotations

import torch

from mdgan_dist.algorithms.fault import crash_if_scheduled
from mdgan_dist.algorithms.flat_state import flatten, unflatten_into
from mdgan_dist.algorithms.flgan.averaging import model_tensors
from mdgan_dist.algorithms.handshake import answer_server
from mdgan_dist.algorithms.local import LocalGAN
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.distributed.protocol import Feedback, Stop, Sync, Train
from mdgan_dist.resources import ComputeClock, write_peer_stats
from mdgan_dist.seeding import generator


class FLGANWorker:
    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx
        self.transport = ctx.transport
        worker = self.transport.rank - 1
        shard = ctx.shard(worker)
        self.shard_size = len(shard[0])
        noise = generator(ctx.cfg.train.seed, "noise", worker)
        self.gan = LocalGAN(ctx.cfg, ctx.image_shape, ctx.num_classes, shard, worker, noise, ctx.device)
        self.tensors = model_tensors(self.gan.generator, self.gan.discriminator)
        self.average = torch.empty(sum(t.numel() for t in self.tensors), device=ctx.device)
        self.kill_at = ctx.faults.kills.get(self.transport.rank)
        self.compute_clock = ComputeClock()  # the local GAN iterations: the worker's training compute

    def run(self) -> None:
        answer_server(self.ctx, self.shard_size)
        instruction = self.transport.empty_header()
        while True:
            stage = "waiting for the server's next instruction"
            # The server may be waiting for a slower worker's local iteration or model first.
            self.transport.exchange(stage, recvs=[(0, instruction)], patience=2)
            order = self.transport.expect(instruction, 0, stage, Train, Sync, Stop, numel=0)
            if isinstance(order, Train):
                crash_if_scheduled(self.kill_at, self.transport.rank, order.iteration)
                with self.compute_clock:
                    d_loss, g_loss = self.gan.iteration()
                done = self.transport.header(Feedback(order.iteration, d_loss, g_loss))
                self.transport.exchange(f"reporting iteration {order.iteration}", sends=[(0, done)])
            elif isinstance(order, Sync):
                self.synchronise(order.iteration)
            else:
                break
        write_peer_stats(
            self.ctx.run_dir, "flgan worker", self.transport, compute_cpu_seconds=self.compute_clock.seconds
        )
        # The last iteration ends with an averaging: these equal the server's models.
        models = {"generator": self.gan.generator.state_dict(), "discriminator": self.gan.discriminator.state_dict()}
        torch.save(models, self.ctx.run_dir / f"models_rank{self.transport.rank}.pt")

    def synchronise(self, iteration: int) -> None:
        """Sends G and D, and takes the server's weighted average in their place."""
        outgoing = flatten(self.tensors, self.transport.device)
        header_out = self.transport.header(Sync(iteration, outgoing.numel()))
        header_in = self.transport.empty_header()
        stage = f"model averaging after iteration {iteration}"
        self.transport.exchange(
            stage, sends=[(0, header_out), (0, outgoing)], recvs=[(0, header_in), (0, self.average)], patience=2
        )
        self.transport.expect(header_in, 0, stage, Sync, iteration=iteration, numel=self.average.numel())
        unflatten_into(self.tensors, self.average)
