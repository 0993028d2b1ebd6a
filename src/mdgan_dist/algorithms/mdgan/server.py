"""The MD-GAN server (rank 0): generate k batches, hand them out, aggregate the feedback, step G."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from mdgan_dist.algorithms.components import label_classes, make_generator
from mdgan_dist.algorithms.mdgan.handshake import greet_workers, refuse_workers
from mdgan_dist.algorithms.mdgan.message import BatchMessage
from mdgan_dist.algorithms.mdgan.roster import Roster
from mdgan_dist.algorithms.mdgan.schedule import derangement, feedback_batch, swap_period, training_batch
from mdgan_dist.algorithms.scoring import Scoring
from mdgan_dist.algorithms.steps import adam, aggregate_feedback, generator_input, generator_step, sample_latent
from mdgan_dist.checkpoint import (
    SERVER_FILE,
    atomic_save,
    checkpoint_dir,
    newest_complete,
    prune,
    verify,
    write_manifest,
)
from mdgan_dist.checkpoint import load as load_checkpoint
from mdgan_dist.config import Config, digest, resolved_k, to_dict, trajectory_digest
from mdgan_dist.distributed.protocol import Header, Kind
from mdgan_dist.distributed.transport import Transfer, Transport
from mdgan_dist.errors import ConfigError
from mdgan_dist.run_logging import RunLogger
from mdgan_dist.seeding import generator

log = logging.getLogger("mdgan_dist")


def message_shapes(cfg: Config, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """What the handshake agrees on: batch size and sample shape of every training message."""
    return torch.tensor([cfg.train.batch_size, *image_shape], dtype=torch.int64)


class Server:
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
        self.roster = Roster(num_workers, resolved_k(cfg.mdgan, num_workers), cfg.fault.tolerate_worker_loss)
        workers = self.roster.live
        device = transport.device
        self.generator = make_generator(cfg, image_shape, num_classes).to(device)
        self.optimizer = adam(self.generator, cfg.optim.g_lr, cfg.optim.beta1, cfg.optim.beta2)
        self.noise = generator(cfg.train.seed, "noise")
        batch = cfg.train.batch_size
        # Preallocated once: receive buffers keep their shape for the whole run.
        conditional = cfg.model.conditional
        self.outgoing = {rank: BatchMessage(batch, image_shape, conditional, device) for rank in workers}
        self.feedback = {rank: torch.empty((batch, *image_shape), device=device) for rank in workers}
        self.replies = {rank: transport.empty_header() for rank in workers}
        self.swaps = 0
        self.trajectory = trajectory_digest(cfg, num_workers)
        # `touch <run_dir>/STOP`: checkpoint at the next iteration and end cleanly (SLURM's
        # pre-time-limit signal does this through launch/slurm.sbatch).
        self.stop_file = run_dir / "STOP"

    def run(self) -> None:
        cfg = self.cfg
        start, period = self.start()
        finished = True
        scoring = Scoring(cfg, self.num_classes, self.transport.device)
        with RunLogger(self.run_dir, cfg.log.progress, start, "MD-GAN") as logger:
            for iteration in logger.progress(range(start, cfg.train.iterations), cfg.train.iterations):
                started, sent, received = time.perf_counter(), self.transport.bytes_sent, self.transport.bytes_recv
                d_losses, g_losses = self.train_iteration(iteration)
                done, last = iteration + 1, iteration + 1 == cfg.train.iterations
                if period and done % period == 0:
                    self.order_swap(iteration)
                if done % cfg.log.every == 0 or last:
                    logger.scalars(
                        done,
                        g_loss=sum(g_losses) / len(g_losses),
                        d_loss=sum(d_losses) / len(d_losses),
                        d_loss_per_worker=d_losses,
                        server_bytes_sent=self.transport.bytes_sent - sent,
                        server_bytes_recv=self.transport.bytes_recv - received,
                        iteration_seconds=time.perf_counter() - started,
                        swaps=self.swaps,
                    )
                scoring.after(done, last, self.generator, logger)
                stop = self.stop_file.exists()
                if stop or (cfg.checkpoint.every and (done % cfg.checkpoint.every == 0 or last)):
                    self.checkpoint(done)
                if stop and not last:
                    self.stop_file.unlink(missing_ok=True)
                    log.info(f"stop requested: checkpoint of iteration {done} written, continue with resume=auto")
                    finished = False
                    break
        # arg0 says whether training finished: after a stop request the run continues later and
        # nobody writes final models.
        stop_order = self.transport.header(Header(Kind.STOP, cfg.train.iterations, arg0=int(finished)))
        self.exchange("stop", sends=[(rank, stop_order) for rank in self.roster.live])
        self.roster.write_summary(self.run_dir / "workers.json")
        if finished:
            final = {"generator": self.generator.state_dict(), "iteration": cfg.train.iterations}
            torch.save(final, self.run_dir / "generator.pt")

    def start(self) -> tuple[int, int | None]:
        """Resume (or not), greet the workers; returns the first iteration and the swap period."""
        shapes = message_shapes(self.cfg, self.image_shape).to(self.transport.device)
        try:
            start = self.resume()
        except ConfigError:
            refuse_workers(self.transport, shapes, self.roster.live)
            raise
        shard_sizes = greet_workers(self.transport, digest(self.cfg), start, shapes, self.roster.live)
        period = swap_period(shard_sizes, self.cfg.train.batch_size, self.cfg.mdgan.swap_every_epochs)
        workers = len(self.roster.live)
        log.info(f"{workers} workers, shard sizes {shard_sizes}, k={self.roster.k}, swap every {period} iterations")
        return start, period

    def resume(self) -> int:
        """Loads the checkpoint resume= asks for, if any; returns the iteration to start from."""
        if self.cfg.resume == "never":
            return 0
        if self.cfg.resume == "auto":
            found, refused = newest_complete(self.run_dir, self.trajectory, len(self.roster.live))
            for reason in refused:
                log.warning(f"not resuming from it: {reason}")
            if found is None:
                return 0
        else:
            found = verify(Path(self.cfg.resume), self.trajectory, len(self.roster.live))
        state = load_checkpoint(found.directory / SERVER_FILE, self.transport.device)
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.noise.set_state(state["noise"])
        self.swaps = state["swaps"]
        torch.set_rng_state(state["rng"])
        log.info(f"resuming from {found.directory} at iteration {found.iteration}")
        return found.iteration

    def checkpoint(self, done: int) -> None:
        """Workers write their state first; the server's file and then the manifest complete it."""
        stage = f"checkpoint at iteration {done}"
        order = self.transport.header(Header(Kind.CHECKPOINT, done))
        live = self.roster.live
        self.exchange(
            stage, sends=[(rank, order) for rank in live], recvs=[(rank, self.replies[rank]) for rank in live]
        )
        for rank in self.roster.live:
            self.transport.expect(self.replies[rank], rank, stage, [Kind.CHECKPOINT], done)
        state = {
            "iteration": done,
            "generator": self.generator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "noise": self.noise.get_state(),
            "swaps": self.swaps,
            "rng": torch.get_rng_state(),
            "config": to_dict(self.cfg),
        }
        directory = checkpoint_dir(self.run_dir, done)
        atomic_save(state, directory / SERVER_FILE)
        write_manifest(directory, done, self.trajectory)
        prune(self.run_dir, self.cfg.checkpoint.keep)

    def train_iteration(self, iteration: int) -> tuple[list[float], list[float]]:
        """Paper's Algorithm 1, server side: returns the workers' D losses and generator losses."""
        batch, k, live = self.cfg.train.batch_size, self.roster.k, self.roster.live
        device = self.transport.device
        classes = label_classes(self.cfg, self.num_classes)
        noise, labels = sample_latent(self.noise, k * batch, self.cfg.model.z_dim, classes)
        labels = None if labels is None else labels.to(device)
        generated = self.generator(generator_input(noise.to(device), labels, self.num_classes))
        generated = generated.view(k, batch, *self.image_shape)
        samples = generated.detach()
        labels = None if labels is None else labels.view(k, batch)
        train = self.transport.header(Header(Kind.TRAIN, iteration, numel=self.outgoing[live[0]].buffer.numel()))
        sends, recvs = [], []
        for worker, rank in enumerate(live):
            message = self.outgoing[rank]
            for row, index in (
                (message.TRAINING, training_batch(worker, k)),
                (message.FEEDBACK, feedback_batch(worker, k)),
            ):
                message.put(row, samples[index], None if labels is None else labels[index])
            sends += [(rank, train), (rank, message.buffer)]
            recvs += [(rank, self.replies[rank]), (rank, self.feedback[rank])]
        assignment = {rank: feedback_batch(worker, k) for worker, rank in enumerate(live)}
        # A worker may first spend timeout_s in a swap with a partner that went silent.
        patience = 2 if self.roster.tolerant else 1
        self.exchange(f"training iteration {iteration}", sends=sends, recvs=recvs, patience=patience)
        stage = f"feedback of iteration {iteration}"
        live = self.roster.live  # without the workers dropped just now
        answers = [self.transport.expect(self.replies[rank], rank, stage, [Kind.FEEDBACK], iteration) for rank in live]
        upstream = aggregate_feedback([self.feedback[rank] for rank in live], [assignment[rank] for rank in live], k)
        generator_step(self.optimizer, generated, upstream)
        return [answer.value0 for answer in answers], [answer.value1 for answer in answers]

    def order_swap(self, iteration: int) -> None:
        """Tells every live worker where to send its D and where the next one comes from."""
        live = self.roster.live
        if len(live) < 2:
            return
        targets = derangement(len(live), self.cfg.train.seed, self.swaps)
        sources = {target: worker for worker, target in enumerate(targets)}
        sends = []
        for worker, rank in enumerate(live):
            order = Header(Kind.SWAP, iteration, arg0=live[targets[worker]], arg1=live[sources[worker]])
            sends.append((rank, self.transport.header(order)))
        self.exchange(f"swap order after iteration {iteration}", sends=sends)
        self.swaps += 1

    def exchange(
        self, stage: str, sends: Sequence[Transfer] = (), recvs: Sequence[Transfer] = (), patience: int = 1
    ) -> None:
        """The transport's exchange; a worker that fails is dropped if fault.tolerate_worker_loss."""
        self.roster.drop(self.transport.exchange(stage, sends, recvs, tolerate=self.roster.tolerant, patience=patience))
