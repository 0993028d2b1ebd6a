"""An MD-GAN worker (rank n+1): train D_n on its own shard, answer with the generator's feedback."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import torch
import torch.distributed as dist

from mdgan_dist.algorithms.components import label_classes, make_augment, make_discriminator, make_sampler
from mdgan_dist.algorithms.mdgan.handshake import answer_server
from mdgan_dist.algorithms.mdgan.message import BatchMessage, FeedbackMessage, wire_dtype
from mdgan_dist.algorithms.mdgan.server import message_shapes
from mdgan_dist.algorithms.mdgan.swap import swap_discriminator
from mdgan_dist.algorithms.steps import discriminator_adam, generator_feedback, train_discriminator
from mdgan_dist.checkpoint import atomic_save, checkpoint_dir, find_worker_file, resume_directory, worker_file
from mdgan_dist.checkpoint import load as load_checkpoint
from mdgan_dist.config import Config, digest, kill_point, slow_point
from mdgan_dist.distributed.protocol import Header, Kind
from mdgan_dist.distributed.transport import Transport
from mdgan_dist.errors import PeerError
from mdgan_dist.resources import write_peer_stats

log = logging.getLogger("mdgan_dist")


class Worker:
    def __init__(
        self,
        cfg: Config,
        transport: Transport,
        image_shape: tuple[int, int, int],
        num_classes: int,
        shard: tuple[torch.Tensor, torch.Tensor],
    ) -> None:
        self.cfg = cfg
        self.transport = transport
        self.image_shape = image_shape
        self.worker = transport.rank - 1
        device = transport.device
        images, labels = shard
        self.shard_size = len(images)
        self.sampler = make_sampler(cfg, images.to(device), labels.to(device), self.worker)
        self.augment = make_augment(cfg, self.worker)
        self.discriminator = make_discriminator(cfg, image_shape, num_classes, self.worker).to(device)
        self.optimizer = discriminator_adam(self.discriminator, cfg.optim)
        batch, dtype, wire = cfg.train.batch_size, wire_dtype(cfg.comm.dtype), transport.wire
        self.batches = BatchMessage(batch, image_shape, label_classes(cfg, num_classes), dtype, wire)
        self.reply = FeedbackMessage(batch, image_shape, dtype, wire)
        # D computes in float32 on the device: the received batches are used in place when they
        # are already that, else converted into this buffer.
        in_place = dtype == torch.float32 and wire == device
        self.samples = self.batches.images if in_place else torch.empty(self.batches.images.shape, device=device)
        self.holds = self.worker  # which D this worker holds: the worker it was born on
        self.kill_at = kill_point(cfg.fault, dist.get_world_size() - 1)
        self.slow = slow_point(cfg.fault, dist.get_world_size() - 1)
        self.swaps = self.swap_bytes_sent = self.swap_bytes_recv = self.iterations_trained = 0
        # The server may itself be waiting for a silent worker (timeout_s), and, with lost workers
        # tolerated, for a worker stuck in a swap with a silent partner (2 x timeout_s).
        self.server_patience = 3 if cfg.fault.tolerate_worker_loss else 2

    def run(self, run_dir: Path) -> None:
        shapes = message_shapes(self.cfg, self.image_shape).to(self.transport.device)
        start = answer_server(self.transport, digest(self.cfg), shapes, self.shard_size)
        if start > 0:
            self.load(find_worker_file(resume_directory(self.cfg, run_dir, start), self.transport.rank))
        if self.cfg.mdgan.swap_every_epochs:
            self.warm_up_swap_pairs()
        instruction = self.transport.empty_header()
        expected = [Kind.TRAIN, Kind.SWAP, Kind.CHECKPOINT, Kind.STOP]
        # A TRAIN comes as one packet, header included, except after the handshake and after a
        # control message: then as a bare header first (the server's TRAIN says which is next).
        expect_packet = False
        while True:
            stage = "waiting for the server's next instruction"
            buffer = self.batches.buffer if expect_packet else instruction
            self.transport.exchange(stage, recvs=[(0, buffer)], patience=self.server_patience)
            header = self.transport.expect(self.batches.header if expect_packet else instruction, 0, stage, expected)
            if header.kind == Kind.TRAIN:
                if not expect_packet:
                    stage = f"receiving the generated batches of iteration {header.iteration}"
                    self.transport.exchange(stage, recvs=[(0, self.batches.buffer)])
                self.train_iteration(header.iteration)
                expect_packet = not header.arg0  # arg0: a control message comes next
                continue
            expect_packet = False
            if header.kind == Kind.SWAP:
                self.swap(header)
            elif header.kind == Kind.CHECKPOINT:
                self.checkpoint(run_dir, header.iteration)
            else:
                break
        write_peer_stats(
            run_dir,
            "mdgan worker",
            self.transport,
            iterations_trained=self.iterations_trained,
            swaps=self.swaps,
            swap_bytes_sent=self.swap_bytes_sent,
            swap_bytes_recv=self.swap_bytes_recv,
        )
        if header.arg0:  # training finished (not a stop request)
            final = run_dir / f"discriminator_rank{self.transport.rank}.pt"
            torch.save({"discriminator": self.discriminator.state_dict(), "holds": self.holds}, final)

    def warm_up_swap_pairs(self) -> None:
        """Every pair of workers trades a header once before training: NCCL connects a pair on its
        first message (the first swap would pay for it), and a worker that cannot reach another
        fails here, at start, instead of at the first swap."""
        me = self.transport.rank
        others = [rank for rank in range(1, dist.get_world_size()) if rank != me]
        if not others:  # a single worker swaps with nobody
            return
        inbox = {rank: self.transport.empty_header() for rank in others}
        greeting = self.transport.header(Header(Kind.HELLO, arg0=me))
        stage = "warm-up of the worker pairs"
        self.transport.exchange(stage, sends=[(rank, greeting) for rank in others], recvs=list(inbox.items()))
        for rank, buffer in inbox.items():
            if self.transport.expect(buffer, rank, stage, [Kind.HELLO]).arg0 != rank:
                raise PeerError(me, rank, stage, "the greeting names another rank")

    def swap(self, order: Header) -> None:
        sent, received = self.transport.bytes_sent, self.transport.bytes_recv
        try:
            self.holds = swap_discriminator(
                self.transport,
                self.discriminator,
                self.optimizer,
                self.cfg.mdgan.swap_optimizer_state,
                order.iteration,
                self.holds,
                target=order.arg0,
                source=order.arg1,
            )
        except PeerError as error:
            if not self.cfg.fault.tolerate_worker_loss:
                raise
            # The partner died during the swap; the server drops it. Keep training this D.
            log.warning(f"{error}; keeping discriminator D{self.holds}")
            return
        self.swaps += 1
        self.swap_bytes_sent += self.transport.bytes_sent - sent
        self.swap_bytes_recv += self.transport.bytes_recv - received

    def checkpoint(self, run_dir: Path, iteration: int) -> None:
        """Writes this worker's state, then tells the server, which writes the manifest last."""
        state = {
            "iteration": iteration,
            "holds": self.holds,
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "augment": None if self.augment is None else self.augment.state_dict(),
            "rng": torch.get_rng_state(),
        }
        atomic_save(state, worker_file(checkpoint_dir(run_dir, iteration), self.transport.rank, self.holds))
        done = self.transport.header(Header(Kind.CHECKPOINT, iteration))
        self.transport.exchange(f"checkpoint at iteration {iteration}", sends=[(0, done)])

    def load(self, path: Path) -> None:
        state = load_checkpoint(path, self.transport.device)
        self.holds = state["holds"]
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        if self.augment is not None:
            self.augment.load_state_dict(state["augment"])
        torch.set_rng_state(state["rng"])

    def train_iteration(self, iteration: int) -> None:
        """Paper's Algorithm 1, worker side: L discriminator steps, then the feedback on X_g.

        The batches have arrived in self.batches; the reply carries the feedback, the losses and
        the seconds spent on each part (microseconds in arg0 and arg1)."""
        if self.kill_at == (self.transport.rank, iteration):
            log.warning(f"fault.kill_worker: rank {self.transport.rank} kills itself at iteration {iteration}")
            os.kill(os.getpid(), signal.SIGKILL)  # a real crash: no exception, no clean-up
        message, device = self.batches, self.transport.device
        started = time.perf_counter()
        if self.samples is not message.images:
            self.samples.copy_(message.images)
        labels = None if message.labels is None else message.labels.to(device).long()
        training, feedback_row = message.TRAINING, message.FEEDBACK
        fake = (self.samples[training], None if labels is None else labels[training])
        gan = self.cfg.gan
        d_loss = train_discriminator(self.discriminator, self.optimizer, self.sampler, fake, gan, self.augment)
        trained = time.perf_counter()
        feedback, g_loss = generator_feedback(
            self.discriminator,
            self.samples[feedback_row],
            gan,
            None if labels is None else labels[feedback_row],
            self.augment,
        )
        self.reply.feedback.copy_(feedback)
        self.iterations_trained += 1
        if self.slow is not None and self.slow[0] == self.transport.rank:
            time.sleep(self.slow[1])  # fault.slow_worker: a straggler (slow feedback), for tests and demos
        answered = time.perf_counter()
        Header(
            Kind.FEEDBACK,
            iteration,
            arg0=round((trained - started) * 1e6),
            arg1=round((answered - trained) * 1e6),
            numel=self.reply.payload.numel(),
            value0=d_loss,
            value1=g_loss,
        ).encode(self.reply.header)
        self.transport.exchange(f"sending the feedback of iteration {iteration}", sends=[(0, self.reply.buffer)])
