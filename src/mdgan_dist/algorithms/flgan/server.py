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
from pathlib import Path
from typing import Any, TypeVar

import torch

from mdgan_dist.algorithms.components import make_discriminator, make_generator
from mdgan_dist.algorithms.ema import average_of
from mdgan_dist.algorithms.epochs import iterations_per_epochs
from mdgan_dist.algorithms.finite import all_finite
from mdgan_dist.algorithms.flat_state import unflatten_into
from mdgan_dist.algorithms.flgan.averaging import model_tensors, weighted_average
from mdgan_dist.algorithms.membership import Membership
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.algorithms.training import Report, Schedule
from mdgan_dist.algorithms.workers import Workers
from mdgan_dist.distributed.protocol import AveragedModels, LocalLosses, LocalModels, Message, SyncOrder, Train
from mdgan_dist.errors import NonFiniteError, PeerError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)


class FLGANServer:
    """FL-GAN's server in the training loop (algorithms/loop.py); its state is the averaged G and
    D, the moving average of G and the count of averagings. The workers keep their own."""

    name = "FL-GAN"
    role = "flgan server"

    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.cfg
        self.transport = ctx.transport
        self.workers = Workers(self.transport, Membership(ctx.num_workers, cfg.fault.tolerate_worker_loss))
        # The global models: built as every worker builds its own, so all start equal.
        self.generator = make_generator(cfg, ctx.image_shape, ctx.num_classes).to(ctx.device)
        self.discriminator = make_discriminator(cfg, ctx.image_shape, ctx.num_classes, 0).to(ctx.device)
        # The average of the server's G over iterations: between two averagings that G stays as it is.
        self.average = average_of(self.generator, cfg.gan.ema_halflife)
        self.tensors = model_tensors(self.generator, self.discriminator)
        size = sum(tensor.numel() for tensor in self.tensors)
        self.models = {rank: torch.empty(size, device=ctx.device) for rank in self.workers.live}
        self.shard_sizes: dict[int, int] = {}
        self.period = 1  # iterations between averagings, once the shards are known
        self.syncs = self.sync_bytes_sent = self.sync_bytes_recv = 0

    def start(self, shard_sizes: list[int]) -> None:
        self.shard_sizes = dict(zip(self.workers.live, shard_sizes, strict=True))
        self.period = iterations_per_epochs(shard_sizes, self.cfg.train.batch_size, self.cfg.flgan.sync_every_epochs)
        log.info(
            "%d workers, shard sizes %s, average G and D every %d iterations",
            len(shard_sizes),
            shard_sizes,
            self.period,
        )

    def step(self, iteration: int, _schedule: Schedule) -> Report:
        """Every live worker runs one local iteration; every period, the averaging."""
        order = self.transport.header(Train(iteration))
        stage = f"local iteration {iteration}"
        live = self.workers.live
        replies = self.workers.replies
        self.workers.exchange(
            stage, sends=[(rank, order) for rank in live], recvs=[(rank, replies[rank]) for rank in live]
        )
        answers = self.answers(stage, LocalLosses, iteration, dict.fromkeys(live, 0)).values()
        done = iteration + 1
        if done % self.period == 0:
            self.synchronise(done)
        if self.average is not None:
            self.average.update(self.generator, done)
        d_losses, g_losses = [answer.d_loss for answer in answers], [answer.g_loss for answer in answers]
        return Report(d_losses, g_losses, {"syncs": self.syncs})

    def conclude(self, done: int) -> None:
        """A run ends with an averaging, so that the final G is the average of the newest models
        and every rank ends with it. After the last checkpoint: a longer run, or this one resumed
        and extended, does not average there unless the period says so."""
        if done % self.period:
            self.synchronise(done)

    def synchronise(self, done: int) -> None:
        """Collects every live worker's G and D, averages them by shard size, and sends the average back."""
        stage = f"model averaging after iteration {done}"
        sent, received = self.transport.bytes_sent, self.transport.bytes_recv
        order = self.transport.header(SyncOrder(done))
        live, replies = self.workers.live, self.workers.replies  # the live list: a worker dropped below leaves it
        recvs = [transfer for rank in live for transfer in ((rank, replies[rank]), (rank, self.models[rank]))]
        self.workers.exchange(stage, sends=[(rank, order) for rank in live], recvs=recvs)
        self.answers(stage, LocalModels, done, {rank: self.models[rank].numel() for rank in live})
        self.require_finite_models(done)
        average = weighted_average([self.models[rank] for rank in live], [self.shard_sizes[rank] for rank in live])
        unflatten_into(self.tensors, average)
        reply = self.transport.header(AveragedModels(done, average.numel()))
        self.workers.exchange(stage, sends=[transfer for rank in live for transfer in ((rank, reply), (rank, average))])
        self.syncs += 1
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
                    self.workers.replies[rank], rank, stage, kind, iteration=iteration, numel=numel
                )
            except PeerError as error:
                if not self.workers.members.tolerant:
                    raise
                failures[rank] = error
        self.workers.members.drop(failures)
        return found

    def require_finite_models(self, done: int) -> None:
        """The non-finite guard, server side: no worker's model that is not finite enters the
        average. Such a worker ends the run (NonFiniteError), or with fault.tolerate_worker_loss
        is dropped."""
        members, stage = self.workers.members, f"model averaging after iteration {done}"
        spoiled = [rank for rank in members.live if not all_finite([self.models[rank]])]
        if spoiled and not members.tolerant:
            raise NonFiniteError(0, done - 1, f"the models of worker rank {spoiled[0]}")
        members.drop({rank: PeerError(0, rank, stage, "its models are not finite") for rank in spoiled})

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "average": None if self.average is None else self.average.state_dict(),
            "syncs": self.syncs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])
        self.syncs = state["syncs"]

    def stats(self) -> dict[str, float | int | None]:
        return {"syncs": self.syncs, "sync_bytes_sent": self.sync_bytes_sent, "sync_bytes_recv": self.sync_bytes_recv}

    def save_final(self, run_dir: Path) -> None:
        torch.save({"discriminator": self.discriminator.state_dict()}, run_dir / "discriminator.pt")
