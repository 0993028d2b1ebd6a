"""The FL-GAN server (rank 0): drives the workers' local iterations and averages G and D every E epochs.

FL-GAN is federated averaging applied to a GAN (the paper's baseline): every worker trains a whole
G and D on its shard; every flgan.sync_every_epochs local epochs the server replaces all of them
by their average weighted by shard size. Scores and samples come from the averaged G. Adam state
stays on each worker, as in FedAvg.
"""

from __future__ import annotations

import logging
import time

import torch

from mdgan_dist.algorithms.components import make_discriminator, make_generator
from mdgan_dist.algorithms.ema import average_of, final_generator
from mdgan_dist.algorithms.epochs import iterations_per_epochs
from mdgan_dist.algorithms.flat_state import unflatten_into
from mdgan_dist.algorithms.flgan.averaging import model_tensors, weighted_average
from mdgan_dist.algorithms.handshake import greet_workers
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.algorithms.scoring import Scoring
from mdgan_dist.distributed.protocol import Feedback, Stop, Sync, Train
from mdgan_dist.resources import write_peer_stats
from mdgan_dist.run_logging import RunLogger

log = logging.getLogger(__name__)


class FLGANServer:
    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.cfg
        self.transport = ctx.transport
        self.workers = list(range(1, ctx.num_workers + 1))
        # The global models: built as every worker builds its own, so all start equal.
        self.generator = make_generator(cfg, ctx.image_shape, ctx.num_classes).to(ctx.device)
        self.discriminator = make_discriminator(cfg, ctx.image_shape, ctx.num_classes, 0).to(ctx.device)
        # The average of the server's G over iterations: between two averagings that G stays as it is.
        self.average = average_of(self.generator, cfg.gan.ema_halflife)
        self.tensors = model_tensors(self.generator, self.discriminator)
        size = sum(tensor.numel() for tensor in self.tensors)
        self.models = {rank: torch.empty(size, device=ctx.device) for rank in self.workers}
        self.replies = {rank: self.transport.empty_header() for rank in self.workers}
        self.sync_bytes_sent = self.sync_bytes_recv = 0

    def run(self) -> None:
        cfg, run_dir = self.cfg, self.ctx.run_dir
        shard_sizes = greet_workers(self.ctx, 0, self.workers)
        period = iterations_per_epochs(shard_sizes, cfg.train.batch_size, cfg.flgan.sync_every_epochs)
        log.info(
            "%d workers, shard sizes %s, average G and D every %d iterations", len(self.workers), shard_sizes, period
        )
        scoring = Scoring(cfg, self.ctx.num_classes, self.ctx.device)
        iterations, syncs = cfg.train.iterations, 0
        with RunLogger(run_dir, cfg.log.progress, 0, "FL-GAN") as logger:
            for iteration in logger.progress(range(iterations), iterations):
                started, sent, received = time.perf_counter(), self.transport.bytes_sent, self.transport.bytes_recv
                d_losses, g_losses = self.train_iteration(iteration)
                done, last = iteration + 1, iteration + 1 == iterations
                if done % period == 0 or last:  # the scored G is always the average of the latest models
                    self.synchronise(done, shard_sizes)
                    syncs += 1
                if self.average is not None:
                    self.average.update(self.generator, done)
                if done % cfg.log.every == 0 or last:
                    logger.scalars(
                        done,
                        g_loss=sum(g_losses) / len(g_losses),
                        d_loss=sum(d_losses) / len(d_losses),
                        d_loss_per_worker=d_losses,
                        server_bytes_sent=self.transport.bytes_sent - sent,
                        server_bytes_recv=self.transport.bytes_recv - received,
                        iteration_seconds=time.perf_counter() - started,
                        syncs=syncs,
                    )
                scoring.after(done, last, self.generator, self.average, logger)
        stop = self.transport.header(Stop(iterations, finished=True))
        self.transport.exchange("stop", sends=[(rank, stop) for rank in self.workers])
        write_peer_stats(
            run_dir,
            "flgan server",
            self.transport,
            syncs=syncs,
            sync_bytes_sent=self.sync_bytes_sent,
            sync_bytes_recv=self.sync_bytes_recv,
        )
        torch.save(final_generator(self.generator, self.average, iterations), run_dir / "generator.pt")
        torch.save({"discriminator": self.discriminator.state_dict()}, run_dir / "discriminator.pt")

    def train_iteration(self, iteration: int) -> tuple[list[float], list[float]]:
        """Every worker runs one local iteration; returns their D and G losses."""
        order = self.transport.header(Train(iteration))
        stage = f"local iteration {iteration}"
        self.transport.exchange(stage, sends=[(rank, order) for rank in self.workers], recvs=list(self.replies.items()))
        answers = [
            self.transport.expect(self.replies[rank], rank, stage, Feedback, iteration=iteration, numel=0)
            for rank in self.workers
        ]
        return [answer.d_loss for answer in answers], [answer.g_loss for answer in answers]

    def synchronise(self, done: int, shard_sizes: list[int]) -> None:
        """Collects every worker's G and D, averages them by shard size, and sends the average back."""
        stage = f"model averaging after iteration {done}"
        sent, received = self.transport.bytes_sent, self.transport.bytes_recv
        order = self.transport.header(Sync(done))
        recvs = [
            transfer for rank in self.workers for transfer in ((rank, self.replies[rank]), (rank, self.models[rank]))
        ]
        self.transport.exchange(stage, sends=[(rank, order) for rank in self.workers], recvs=recvs)
        for rank in self.workers:
            self.transport.expect(
                self.replies[rank], rank, stage, Sync, iteration=done, numel=self.models[rank].numel()
            )
        average = weighted_average([self.models[rank] for rank in self.workers], shard_sizes)
        unflatten_into(self.tensors, average)
        reply = self.transport.header(Sync(done, average.numel()))
        sends = [transfer for rank in self.workers for transfer in ((rank, reply), (rank, average))]
        self.transport.exchange(stage, sends=sends)
        self.sync_bytes_sent += self.transport.bytes_sent - sent
        self.sync_bytes_recv += self.transport.bytes_recv - received
