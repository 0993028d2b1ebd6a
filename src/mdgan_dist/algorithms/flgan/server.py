"""The FL-GAN server (rank 0): drives the workers' local iterations and averages G and D every E epochs.

FL-GAN is federated averaging applied to a GAN (the paper's baseline): every worker trains a whole
G and D on its shard; every flgan.sync_every_epochs local epochs the server replaces all of them
by their average weighted by shard size. Scores and samples come from the averaged G. Adam state
stays on each worker, as in FedAvg.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from mdgan_dist.algorithms.components import make_discriminator, make_generator
from mdgan_dist.algorithms.ema import average_of, final_generator
from mdgan_dist.algorithms.flat_state import unflatten_into
from mdgan_dist.algorithms.flgan.averaging import model_tensors, weighted_average
from mdgan_dist.algorithms.mdgan.handshake import greet_workers
from mdgan_dist.algorithms.mdgan.schedule import iterations_per_epochs
from mdgan_dist.algorithms.mdgan.server import message_shapes
from mdgan_dist.algorithms.scoring import Scoring
from mdgan_dist.config import Config, digest
from mdgan_dist.distributed.protocol import Header, Kind
from mdgan_dist.distributed.transport import Transport
from mdgan_dist.resources import write_peer_stats
from mdgan_dist.run_logging import RunLogger

log = logging.getLogger("mdgan_dist")


class FLGANServer:
    def __init__(
        self,
        cfg: Config,
        transport: Transport,
        num_workers: int,
        image_shape: tuple[int, int, int],
        num_classes: int,
        run_dir: Path,
    ) -> None:
        self.cfg = cfg
        self.transport = transport
        self.image_shape = image_shape
        self.num_classes = num_classes
        self.run_dir = run_dir
        self.workers = list(range(1, num_workers + 1))
        device = transport.device
        # The global models: built as every worker builds its own, so all start equal.
        self.generator = make_generator(cfg, image_shape, num_classes).to(device)
        self.discriminator = make_discriminator(cfg, image_shape, num_classes, 0).to(device)
        # The average of the server's G over iterations: between two averagings that G stays as it is.
        self.average = average_of(self.generator, cfg.gan.ema_halflife)
        self.tensors = model_tensors(self.generator, self.discriminator)
        size = sum(tensor.numel() for tensor in self.tensors)
        self.models = {rank: torch.empty(size, device=device) for rank in self.workers}
        self.replies = {rank: transport.empty_header() for rank in self.workers}
        self.sync_bytes_sent = self.sync_bytes_recv = 0

    def run(self) -> None:
        cfg = self.cfg
        shapes = message_shapes(cfg, self.image_shape).to(self.transport.device)
        shard_sizes = greet_workers(self.transport, digest(cfg), 0, shapes, self.workers)
        period = iterations_per_epochs(shard_sizes, cfg.train.batch_size, cfg.flgan.sync_every_epochs)
        log.info(f"{len(self.workers)} workers, shard sizes {shard_sizes}, average G and D every {period} iterations")
        scoring = Scoring(cfg, self.num_classes, self.transport.device)
        iterations, syncs = cfg.train.iterations, 0
        with RunLogger(self.run_dir, cfg.log.progress, 0, "FL-GAN") as logger:
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
        stop = self.transport.header(Header(Kind.STOP, iterations))
        self.transport.exchange("stop", sends=[(rank, stop) for rank in self.workers])
        write_peer_stats(
            self.run_dir,
            "flgan server",
            self.transport,
            syncs=syncs,
            sync_bytes_sent=self.sync_bytes_sent,
            sync_bytes_recv=self.sync_bytes_recv,
        )
        torch.save(final_generator(self.generator, self.average, iterations), self.run_dir / "generator.pt")
        torch.save({"discriminator": self.discriminator.state_dict()}, self.run_dir / "discriminator.pt")

    def train_iteration(self, iteration: int) -> tuple[list[float], list[float]]:
        """Every worker runs one local iteration; returns their D and G losses."""
        order = self.transport.header(Header(Kind.TRAIN, iteration))
        stage = f"local iteration {iteration}"
        self.transport.exchange(stage, sends=[(rank, order) for rank in self.workers], recvs=list(self.replies.items()))
        answers = [
            self.transport.expect(self.replies[rank], rank, stage, [Kind.FEEDBACK], iteration) for rank in self.workers
        ]
        return [answer.value0 for answer in answers], [answer.value1 for answer in answers]

    def synchronise(self, done: int, shard_sizes: list[int]) -> None:
        """Collects every worker's G and D, averages them by shard size, and sends the average back."""
        stage = f"model averaging after iteration {done}"
        sent, received = self.transport.bytes_sent, self.transport.bytes_recv
        order = self.transport.header(Header(Kind.SYNC, done))
        recvs = [
            transfer for rank in self.workers for transfer in ((rank, self.replies[rank]), (rank, self.models[rank]))
        ]
        self.transport.exchange(stage, sends=[(rank, order) for rank in self.workers], recvs=recvs)
        for rank in self.workers:
            header = self.transport.expect(self.replies[rank], rank, stage, [Kind.SYNC], done)
            if header.numel != self.models[rank].numel():
                raise RuntimeError(
                    f"{stage}: rank {rank} sent {header.numel} values, expected {self.models[rank].numel()}"
                )
        average = weighted_average([self.models[rank] for rank in self.workers], shard_sizes)
        unflatten_into(self.tensors, average)
        reply = self.transport.header(Header(Kind.SYNC, done, numel=average.numel()))
        sends = [transfer for rank in self.workers for transfer in ((rank, reply), (rank, average))]
        self.transport.exchange(stage, sends=sends)
        self.sync_bytes_sent += self.transport.bytes_sent - sent
        self.sync_bytes_recv += self.transport.bytes_recv - received
