"""Which classes each worker's shard holds: what mdgan.aggregate=class_aware needs the server to
know. Each worker process tells the server once, right after the handshake (also on resume), as
one row of 0/1 per worker it hosts (float32: a short message shows as its NaN mark, as for
every float receive); nothing is sent under the other rules. It is a privacy cost of
that rule: the server learns each shard's label set (not the counts)."""

from __future__ import annotations

import torch

from mdgan_dist.distributed.protocol import ClassSets
from mdgan_dist.distributed.transport import Posted, Transport

STAGE = "class sets after the handshake"


def present(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """1 for each class that occurs in `labels`, else 0: float32 [num_classes]."""
    return (torch.bincount(labels.cpu(), minlength=num_classes) > 0).to(torch.float32)


def as_sets(rows: torch.Tensor) -> list[frozenset[int]]:
    """[W, classes] rows of 0/1 as one set of classes per worker."""
    return [frozenset(row.nonzero().flatten().tolist()) for row in rows.cpu()]


def send_class_sets(transport: Transport, rows: torch.Tensor) -> None:
    """Worker side: the classes of each worker the process hosts ([W, classes] 0/1)."""
    rows = rows.to(transport.wire)
    header = transport.header(ClassSets(rows.numel()))
    transport.exchange(STAGE, sends=[(0, header), (0, rows)])


def post_class_sets(
    transport: Transport, ranks: list[int], per_rank: int, num_classes: int
) -> tuple[Posted, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """Server side: posts the receives of every worker process's class sets; read them with
    read_class_sets once the posted exchange completed."""
    buffers = {
        rank: (transport.empty_header(), torch.empty(per_rank, num_classes, device=transport.wire)) for rank in ranks
    }
    recvs = [transfer for rank, (header, rows) in buffers.items() for transfer in ((rank, header), (rank, rows))]
    return transport.post(STAGE, [], recvs), buffers


def read_class_sets(
    transport: Transport, buffers: dict[int, tuple[torch.Tensor, torch.Tensor]], live: list[int]
) -> dict[int, list[frozenset[int]]]:
    """rank -> the class set of each worker it hosts, slot by slot, for the live ranks."""
    found = {}
    for rank in live:
        header, rows = buffers[rank]
        transport.expect(header, rank, STAGE, ClassSets, numel=rows.numel())
        found[rank] = as_sets(rows)
    return found
