"""The MD-GAN server (rank 0): generate k batches, hand them out, aggregate the feedback, step G."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from mdgan_dist.algorithms.mdgan.handshake import greet_workers
from mdgan_dist.algorithms.mdgan.schedule import derangement, feedback_batch, swap_period, training_batch
from mdgan_dist.algorithms.steps import adam, aggregate_feedback, generator_step
from mdgan_dist.config import Config, digest, resolved_k
from mdgan_dist.distributed.protocol import Header, Kind
from mdgan_dist.distributed.transport import Transport
from mdgan_dist.models import build_generator
from mdgan_dist.run_logging import RunLogger
from mdgan_dist.seeding import generator, seeded


def build_server_generator(cfg: Config, image_shape: tuple[int, int, int]) -> torch.nn.Module:
    with seeded(cfg.train.seed, "generator"):
        return build_generator(cfg.model, image_shape)


def message_shapes(cfg: Config, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """What the handshake agrees on: batch size and sample shape of every training message."""
    return torch.tensor([cfg.train.batch_size, *image_shape], dtype=torch.int64)


class Server:
    def __init__(
        self, cfg: Config, transport: Transport, num_workers: int, image_shape: tuple[int, int, int], run_dir: Path
    ) -> None:
        self.cfg = cfg
        self.transport = transport
        self.image_shape = image_shape
        self.run_dir = run_dir
        self.workers = list(range(1, num_workers + 1))
        self.k = resolved_k(cfg.mdgan, len(self.workers))
        device = transport.device
        self.generator = build_server_generator(cfg, image_shape).to(device)
        self.optimizer = adam(self.generator, cfg.optim.g_lr, cfg.optim.beta1, cfg.optim.beta2)
        self.noise = generator(cfg.train.seed, "noise")
        batch = cfg.train.batch_size
        # Preallocated once: receive buffers keep their shape for the whole run.
        self.outgoing = {rank: torch.empty((2, batch, *image_shape), device=device) for rank in self.workers}
        self.feedback = {rank: torch.empty((batch, *image_shape), device=device) for rank in self.workers}
        self.replies = {rank: transport.empty_header() for rank in self.workers}
        self.swaps = 0

    def run(self, logger: RunLogger) -> None:
        cfg, shapes = self.cfg, message_shapes(self.cfg, self.image_shape).to(self.transport.device)
        shard_sizes = greet_workers(self.transport, digest(cfg), shapes, self.workers)
        period = swap_period(shard_sizes, cfg.train.batch_size, cfg.mdgan.swap_every_epochs)
        logger.info(
            f"{len(self.workers)} workers, shard sizes {shard_sizes}, k={self.k}, swap every {period} iterations"
        )
        sample_noise = torch.randn(cfg.log.num_samples, cfg.model.z_dim, generator=generator(cfg.train.seed, "samples"))
        training_started = time.perf_counter()
        for iteration in logger.progress(range(cfg.train.iterations)):
            started, sent, received = time.perf_counter(), self.transport.bytes_sent, self.transport.bytes_recv
            d_losses, g_losses = self.train_iteration(iteration)
            done, last = iteration + 1, iteration + 1 == cfg.train.iterations
            if period and done % period == 0 and not last:
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
                    elapsed_seconds=time.perf_counter() - training_started,
                    swaps=self.swaps,
                )
            if done % cfg.log.sample_every == 0 or last:
                logger.samples(done, self.sample(sample_noise))
        stop = self.transport.header(Header(Kind.STOP, cfg.train.iterations))
        self.transport.exchange("stop", sends=[(rank, stop) for rank in self.workers])
        torch.save(
            {"generator": self.generator.state_dict(), "iteration": cfg.train.iterations}, self.run_dir / "generator.pt"
        )

    def train_iteration(self, iteration: int) -> tuple[list[float], list[float]]:
        """Paper's Algorithm 1, server side: returns the workers' D losses and generator losses."""
        batch = self.cfg.train.batch_size
        noise = torch.randn(self.k * batch, self.cfg.model.z_dim, generator=self.noise).to(self.transport.device)
        generated = self.generator(noise).view(self.k, batch, *self.image_shape)
        samples = generated.detach()
        train = self.transport.header(Header(Kind.TRAIN, iteration, numel=self.outgoing[self.workers[0]].numel()))
        for rank in self.workers:
            worker = rank - 1
            self.outgoing[rank][0].copy_(samples[training_batch(worker, self.k)])
            self.outgoing[rank][1].copy_(samples[feedback_batch(worker, self.k)])
        sends = [transfer for rank in self.workers for transfer in ((rank, train), (rank, self.outgoing[rank]))]
        recvs = [
            transfer for rank in self.workers for transfer in ((rank, self.replies[rank]), (rank, self.feedback[rank]))
        ]
        self.transport.exchange(f"training iteration {iteration}", sends=sends, recvs=recvs)
        stage = f"feedback of iteration {iteration}"
        answers = [
            self.transport.expect(self.replies[rank], rank, stage, [Kind.FEEDBACK], iteration) for rank in self.workers
        ]
        upstream = aggregate_feedback(
            [self.feedback[rank] for rank in self.workers],
            [feedback_batch(rank - 1, self.k) for rank in self.workers],
            self.k,
        )
        generator_step(self.optimizer, generated, upstream)
        return [answer.value0 for answer in answers], [answer.value1 for answer in answers]

    def order_swap(self, iteration: int) -> None:
        """Tells every worker where to send its D and where the next one comes from."""
        targets = derangement(len(self.workers), self.cfg.train.seed, self.swaps)
        sources = {target: worker for worker, target in enumerate(targets)}
        sends = []
        for worker, rank in enumerate(self.workers):
            order = Header(Kind.SWAP, iteration, arg0=targets[worker] + 1, arg1=sources[worker] + 1)
            sends.append((rank, self.transport.header(order)))
        self.transport.exchange(f"swap order after iteration {iteration}", sends=sends)
        self.swaps += 1

    @torch.no_grad()
    def sample(self, noise: torch.Tensor) -> torch.Tensor:
        self.generator.eval()
        images = self.generator(noise.to(self.transport.device)).cpu()
        self.generator.train()
        return images
