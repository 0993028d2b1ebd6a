"""The FL-GAN server (rank 0): drives the workers' local iterations and averages G and D every E epochs.

FL-GAN is federated averaging applied to a GAN (the paper's baseline): every worker trains a whole
G and D on its shard; every flgan.sync_every_epochs local epochs the server replaces all of them
by their average weighted by shard size. Scores and samples come from the averaged G. Adam state
stays on each worker, as in FedAvg. With fault.tolerate_worker_loss a worker that dies or goes
silent is dropped, and the averages are taken over the workers left, weighted by their shards
(FedAvg with the clients that answered).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TypeVar

import torch

from mdgan_dist.algorithms.components import make_discriminator, make_generator
from mdgan_dist.algorithms.ema import average_of, final_generator
from mdgan_dist.algorithms.epochs import iterations_per_epochs
from mdgan_dist.algorithms.flat_state import unflatten_into
from mdgan_dist.algorithms.flgan.averaging import model_tensors, weighted_average
from mdgan_dist.algorithms.handshake import greet_workers
from mdgan_dist.algorithms.membership import Membership
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.algorithms.scoring import Scoring
from mdgan_dist.distributed.protocol import Feedback, Message, Stop, Sync, Train
from mdgan_dist.distributed.transport import Transfer
from mdgan_dist.errors import PeerError
from mdgan_dist.resources import write_peer_stats
from mdgan_dist.run_logging import WORKERS_FILE, RunLogger

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)


class FLGANServer:
    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.cfg
        self.transport = ctx.transport
        self.members = Membership(ctx.num_workers, cfg.fault.tolerate_worker_loss)
        workers = self.members.live
        # The global models: built as every worker builds its own, so all start equal.
        self.generator = make_generator(cfg, ctx.image_shape, ctx.num_classes).to(ctx.device)
        self.discriminator = make_discriminator(cfg, ctx.image_shape, ctx.num_classes, 0).to(ctx.device)
        # The average of the server's G over iterations: between two averagings that G stays as it is.
        self.average = average_of(self.generator, cfg.gan.ema_halflife)
        self.tensors = model_tensors(self.generator, self.discriminator)
        size = sum(tensor.numel() for tensor in self.tensors)
        self.models = {rank: torch.empty(size, device=ctx.device) for rank in workers}
        self.replies = {rank: self.transport.empty_header() for rank in workers}
        self.sync_bytes_sent = self.sync_bytes_recv = 0

    def run(self) -> None:
        cfg, run_dir = self.cfg, self.ctx.run_dir
        shard_sizes = greet_workers(self.ctx, 0, self.members.live)
        self.shard_sizes = dict(zip(self.members.live, shard_sizes, strict=True))
        period = iterations_per_epochs(shard_sizes, cfg.train.batch_size, cfg.flgan.sync_every_epochs)
        log.info(
            "%d workers, shard sizes %s, average G and D every %d iterations", len(shard_sizes), shard_sizes, period
        )
        scoring = Scoring(cfg, self.ctx.num_classes, self.ctx.device)
        iterations, syncs, bytes_trained = cfg.train.iterations, 0, 0
        with RunLogger(run_dir, cfg.log.progress, 0, "FL-GAN") as logger:
            for iteration in logger.progress(range(iterations), iterations):
                started, sent, received = time.perf_counter(), self.transport.bytes_sent, self.transport.bytes_recv
                d_losses, g_losses = self.train_iteration(iteration)
                done, last = iteration + 1, iteration + 1 == iterations
                if done % period == 0 or last:  # the scored G is always the average of the latest models
                    self.synchronise(done)
                    syncs += 1
                if self.average is not None:
                    self.average.update(self.generator, done)
                bytes_trained += self.transport.bytes_sent - sent + self.transport.bytes_recv - received
                if done % cfg.log.every == 0 or last:
                    logger.scalars(
                        done,
                        g_loss=sum(g_losses) / len(g_losses),
                        d_loss=sum(d_losses) / len(d_losses),
                        d_loss_per_worker=d_losses,
                        server_bytes_sent=self.transport.bytes_sent - sent,
                        server_bytes_recv=self.transport.bytes_recv - received,
                        server_bytes_total=bytes_trained,  # every iteration's, averagings included
                        iteration_seconds=time.perf_counter() - started,
                        syncs=syncs,
                    )
                scoring.after(done, last, self.generator, self.average, logger)
        stop = self.transport.header(Stop(iterations, finished=True))
        self.exchange("stop", sends=[(rank, stop) for rank in self.members.live])
        self.members.write_summary(run_dir / WORKERS_FILE)
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
        """Every live worker runs one local iteration; returns their D and G losses."""
        order = self.transport.header(Train(iteration))
        stage = f"local iteration {iteration}"
        live = self.members.live
        self.exchange(
            stage, sends=[(rank, order) for rank in live], recvs=[(rank, self.replies[rank]) for rank in live]
        )
        answers = self.answers(stage, Feedback, iteration, dict.fromkeys(self.members.live, 0))
        return [answer.d_loss for answer in answers.values()], [answer.g_loss for answer in answers.values()]

    def synchronise(self, done: int) -> None:
        """Collects every live worker's G and D, averages them by shard size, and sends the average back."""
        stage = f"model averaging after iteration {done}"
        sent, received = self.transport.bytes_sent, self.transport.bytes_recv
        order = self.transport.header(Sync(done))
        live = self.members.live  # the members' own list: a worker dropped below leaves it
        recvs = [transfer for rank in live for transfer in ((rank, self.replies[rank]), (rank, self.models[rank]))]
        self.exchange(stage, sends=[(rank, order) for rank in live], recvs=recvs)
        self.answers(stage, Sync, done, {rank: self.models[rank].numel() for rank in live})
        average = weighted_average([self.models[rank] for rank in live], [self.shard_sizes[rank] for rank in live])
        unflatten_into(self.tensors, average)
        reply = self.transport.header(Sync(done, average.numel()))
        self.exchange(stage, sends=[transfer for rank in live for transfer in ((rank, reply), (rank, average))])
        self.sync_bytes_sent += self.transport.bytes_sent - sent
        self.sync_bytes_recv += self.transport.bytes_recv - received

    def answers(self, stage: str, kind: type[M], iteration: int, sizes: dict[int, int]) -> dict[int, M]:
        """Each live worker's reply, checked: a malformed one ends the run (PeerError), or with
        fault.tolerate_worker_loss drops its worker."""
        found: dict[int, M] = {}
        failures: dict[int, PeerError] = {}
        for rank, numel in sizes.items():
            try:
                found[rank] = self.transport.expect(
                    self.replies[rank], rank, stage, kind, iteration=iteration, numel=numel
                )
            except PeerError as error:
                if not self.members.tolerant:
                    raise
                failures[rank] = error
        self.members.drop(failures)
        return found

    def exchange(self, stage: str, sends: Sequence[Transfer] = (), recvs: Sequence[Transfer] = ()) -> None:
        """The transport's exchange; a worker that fails is dropped if fault.tolerate_worker_loss."""
        posted = self.transport.post(stage, sends, recvs)
        self.members.drop(self.transport.wait(posted, tolerate=self.members.tolerant))
