"""An FL-GAN worker (rank n+1): a whole GAN on its own shard, averaged with the others on order."""

from __future__ import annotations

from pathlib import Path

import torch

from mdgan_dist.algorithms.flat_state import flatten, unflatten_into
from mdgan_dist.algorithms.flgan.averaging import model_tensors
from mdgan_dist.algorithms.local import LocalGAN
from mdgan_dist.algorithms.mdgan.handshake import answer_server
from mdgan_dist.algorithms.mdgan.server import message_shapes
from mdgan_dist.config import Config, digest
from mdgan_dist.distributed.protocol import Header, Kind
from mdgan_dist.distributed.transport import Transport
from mdgan_dist.resources import write_peer_stats
from mdgan_dist.seeding import generator


class FLGANWorker:
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
        self.shard_size = len(shard[0])
        worker = transport.rank - 1
        noise = generator(cfg.train.seed, "noise", worker)
        self.gan = LocalGAN(cfg, image_shape, num_classes, shard, worker, noise, transport.device)
        self.tensors = model_tensors(self.gan.generator, self.gan.discriminator)
        self.average = torch.empty(sum(t.numel() for t in self.tensors), device=transport.device)

    def run(self, run_dir: Path) -> None:
        shapes = message_shapes(self.cfg, self.image_shape).to(self.transport.device)
        answer_server(self.transport, digest(self.cfg), shapes, self.shard_size)
        instruction = self.transport.empty_header()
        while True:
            stage = "waiting for the server's next instruction"
            # The server may be waiting for a slower worker's local iteration or model first.
            self.transport.exchange(stage, recvs=[(0, instruction)], patience=2)
            header = self.transport.expect(instruction, 0, stage, [Kind.TRAIN, Kind.SYNC, Kind.STOP])
            if header.kind == Kind.TRAIN:
                d_loss, g_loss = self.gan.iteration()
                done = self.transport.header(Header(Kind.FEEDBACK, header.iteration, value0=d_loss, value1=g_loss))
                self.transport.exchange(f"reporting iteration {header.iteration}", sends=[(0, done)])
            elif header.kind == Kind.SYNC:
                self.synchronise(header.iteration)
            else:
                break
        write_peer_stats(run_dir, "flgan worker", self.transport)
        # The last iteration ends with an averaging: these equal the server's models.
        models = {"generator": self.gan.generator.state_dict(), "discriminator": self.gan.discriminator.state_dict()}
        torch.save(models, run_dir / f"models_rank{self.transport.rank}.pt")

    def synchronise(self, iteration: int) -> None:
        """Sends G and D, and takes the server's weighted average in their place."""
        outgoing = flatten(self.tensors, self.transport.device)
        header_out = self.transport.header(Header(Kind.SYNC, iteration, numel=outgoing.numel()))
        header_in = self.transport.empty_header()
        stage = f"model averaging after iteration {iteration}"
        self.transport.exchange(
            stage, sends=[(0, header_out), (0, outgoing)], recvs=[(0, header_in), (0, self.average)], patience=2
        )
        self.transport.expect(header_in, 0, stage, [Kind.SYNC], iteration)
        unflatten_into(self.tensors, self.average)
