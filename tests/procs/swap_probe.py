"""One rank of the swap test: build a distinct discriminator, swap it along a derangement with the
real swap code over gloo, and save its flat state before and after."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from mdgan_dist.algorithms.components import make_discriminator
from mdgan_dist.algorithms.flat_state import flatten
from mdgan_dist.algorithms.mdgan.schedule import derangement
from mdgan_dist.algorithms.mdgan.swap import state_tensors, swap_discriminator
from mdgan_dist.algorithms.steps import adam, discriminator_step
from mdgan_dist.config import Config, GANConfig
from mdgan_dist.distributed.protocol import SwapOrder
from mdgan_dist.distributed.transport import Transport


def main(out: Path, with_optimizer: bool) -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    cfg = Config()
    cfg.model.width = 0.0625
    disc = make_discriminator(cfg, (1, 28, 28), 10, rank)
    optimizer = adam(disc, 1e-3, 0.5, 0.999)
    torch.manual_seed(rank)
    discriminator_step(
        disc, optimizer, (torch.randn(4, 1, 28, 28), None), (torch.randn(4, 1, 28, 28), None), GANConfig(real_label=1.0)
    )
    before = flatten(state_tensors(disc, optimizer, True), torch.device("cpu"))
    targets = derangement(world, seed=3, swap_index=0)
    source = targets.index(rank)
    transport = Transport(rank, 60, torch.device("cpu"))
    arrived = swap_discriminator(transport, disc, optimizer, with_optimizer, SwapOrder(0, targets[rank], source), rank)
    after = flatten(state_tensors(disc, optimizer, True), torch.device("cpu"))
    params = sum(t.numel() for t in disc.state_dict().values())
    torch.save(
        {
            "before": before,
            "after": after,
            "targets": targets,
            "arrived": arrived,
            "params": params,
            "bytes_sent": transport.bytes_sent,
            "bytes_recv": transport.bytes_recv,
        },
        out / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] == "true")
