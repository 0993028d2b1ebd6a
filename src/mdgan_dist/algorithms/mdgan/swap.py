"""Discriminators (and, by default, their Adam state) moving between workers along a swap's orders:
in memory between the slots of one process, as flat buffers peer to peer between processes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mdgan_dist.algorithms.flat_state import flatten, unflatten_into
from mdgan_dist.algorithms.mdgan.stack import DiscriminatorStack
from mdgan_dist.distributed.protocol import DiscriminatorState, SwapOrder
from mdgan_dist.distributed.transport import Transfer, Transport
from mdgan_dist.errors import PeerError


@dataclass
class Arrival:
    """What one source process sends: a header per D, then their states in one buffer."""

    slots: list[int]  # the receiving slots, in the order of the source's own slots
    headers: list[torch.Tensor]
    states: torch.Tensor


def swap_discriminators(
    transport: Transport,
    stack: DiscriminatorStack,
    optimizer: torch.optim.Adam,
    with_optimizer: bool,
    orders: list[SwapOrder],
    holds: list[int],
    tolerate: bool,
) -> tuple[list[int], dict[int, PeerError]]:
    """Sends the D of each slot s to the worker orders[s] names and takes the D of its source in
    its place. Returns which D each slot holds now, and (tolerate) the source processes that
    failed: their slots keep the D they had.

    Orders name workers by address, rank x W + slot (W = the stack's size). To each other process
    go a DISCRIMINATOR header per D, then one buffer of their states in slot order; every send and
    receive is posted together, since a blocking send before a receive deadlocks a cycle.
    """
    me, per_rank = transport.rank, stack.count
    tensors = [stack.slot_tensors(slot, optimizer, with_optimizer) for slot in range(per_rank)]
    before = [flatten(slot_tensors, transport.device) for slot_tensors in tensors]  # copies: slots get overwritten
    numel = before[0].numel()
    iteration = orders[0].iteration
    targets = [divmod(order.send_to, per_rank) for order in orders]
    sources = [divmod(order.receive_from, per_rank) for order in orders]
    stage = f"discriminator swap after iteration {iteration} (to {_ranks(targets, me)}, from {_ranks(sources, me)})"
    sends: list[Transfer] = []
    for rank in sorted({rank for rank, _ in targets} - {me}):
        slots = [slot for slot in range(per_rank) if targets[slot][0] == rank]
        sends += [(rank, transport.header(DiscriminatorState(iteration, holds[slot], numel))) for slot in slots]
        sends.append((rank, torch.cat([before[slot] for slot in slots])))
    arrivals = {}
    for rank in sorted({rank for rank, _ in sources} - {me}):
        slots = sorted(
            (slot for slot in range(per_rank) if sources[slot][0] == rank), key=lambda slot: sources[slot][1]
        )
        arrivals[rank] = Arrival(
            slots, [transport.empty_header() for _ in slots], before[0].new_empty(len(slots) * numel)
        )
    recvs = [(rank, buffer) for rank, arrival in arrivals.items() for buffer in (*arrival.headers, arrival.states)]
    failures = transport.wait(transport.post(stage, sends, recvs), tolerate=tolerate)
    now = list(holds)
    for slot, (rank, source_slot) in enumerate(sources):
        if rank == me:
            unflatten_into(tensors[slot], before[source_slot])
            now[slot] = holds[source_slot]
    for rank, arrival in arrivals.items():
        if rank in failures:
            continue
        states = [
            transport.expect(h, rank, stage, DiscriminatorState, iteration=iteration, numel=numel)
            for h in arrival.headers
        ]
        for index, (slot, state) in enumerate(zip(arrival.slots, states, strict=True)):
            unflatten_into(tensors[slot], arrival.states[index * numel : (index + 1) * numel])
            now[slot] = state.born_on
    return now, failures


def _ranks(peers: list[tuple[int, int]], me: int) -> str:
    ranks = sorted({rank for rank, _ in peers})
    return "rank " + ", ".join(str(rank) for rank in ranks) if ranks != [me] else "its own slots"
