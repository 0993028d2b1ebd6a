"""One process of the swap test: host W distinct discriminators (one trained step each), swap them
along a derangement of all the world's workers with the real swap code over gloo, and save every
slot's flat state before and after."""

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
from mdgan_dist.algorithms.mdgan.stack import DiscriminatorStack
from mdgan_dist.algorithms.mdgan.swap import swap_discriminators
from mdgan_dist.algorithms.steps import adam, discriminator_loss
from mdgan_dist.config import Config
from mdgan_dist.distributed.protocol import SwapOrder
from mdgan_dist.distributed.transport import Transport


def main(out: Path, with_optimizer: bool, per_rank: int) -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    cfg = Config()
    cfg.model.width = 0.0625
    workers = [rank * per_rank + slot for slot in range(per_rank)]  # addresses = worker indices here
    stack = DiscriminatorStack([make_discriminator(cfg, (1, 28, 28), 10, worker) for worker in workers])
    optimizer = adam(stack, 1e-3, 0.5, 0.999)
    torch.manual_seed(rank)
    real, fake = (torch.randn(per_rank, 4, 1, 28, 28) for _ in range(2))
    stack.per_slot(lambda r, f: discriminator_loss(r, f, 1.0), stack.judge(real), stack.judge(fake)).sum().backward()
    optimizer.step()

    def states() -> list[torch.Tensor]:
        return [flatten(stack.slot_tensors(slot, optimizer, True), torch.device("cpu")) for slot in range(per_rank)]

    before = states()
    targets = derangement(world * per_rank, seed=6, swap_index=0)  # some moves within, some across
    orders = [SwapOrder(0, targets[worker], targets.index(worker)) for worker in workers]
    transport = Transport(rank, 60, torch.device("cpu"))
    arrived, failures = swap_discriminators(
        transport, stack, optimizer, with_optimizer, orders, workers, tolerate=False
    )
    assert not failures
    torch.save(
        {
            "before": before,
            "after": states(),
            "targets": targets,
            "arrived": arrived,
            "params": sum(tensor.numel() for tensor in stack.template.state_dict().values()),
            "bytes_sent": transport.bytes_sent,
            "bytes_recv": transport.bytes_recv,
        },
        out / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] == "true", int(sys.argv[3]))
