"""A worker's discriminator (and, by default, its Adam state) as one flat buffer, sent peer to peer."""

from __future__ import annotations

import torch
from torch import nn

from mdgan_dist.algorithms.flat_state import flatten, unflatten_into
from mdgan_dist.distributed.protocol import DiscriminatorState, SwapOrder
from mdgan_dist.distributed.transport import Transport

ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")


def state_tensors(discriminator: nn.Module, optimizer: torch.optim.Adam, with_optimizer: bool) -> list[torch.Tensor]:
    """Everything that travels, in a fixed order: the state_dict in key order, then per parameter
    its Adam step and moments."""
    tensors = list(discriminator.state_dict().values())
    if with_optimizer:
        for param in discriminator.parameters():
            state = optimizer.state[param]
            if not state:  # Adam creates its state lazily; a swap before any step sends zeros
                state["step"] = torch.zeros((), dtype=torch.float32)
                for name in ADAM_MOMENTS:
                    state[name] = torch.zeros_like(param, memory_format=torch.preserve_format)
            tensors += [state["step"], *(state[name] for name in ADAM_MOMENTS)]
    return tensors


def swap_discriminator(
    transport: Transport,
    discriminator: nn.Module,
    optimizer: torch.optim.Adam,
    with_optimizer: bool,
    order: SwapOrder,
    holds: int,
) -> int:
    """Sends this worker's D (born on worker `holds`) to the rank the order names and takes the D
    of its source rank in its place; returns which D arrived.

    Both directions are posted together: a blocking send before the receive deadlocks a cycle.
    """
    tensors = state_tensors(discriminator, optimizer, with_optimizer)
    outgoing = flatten(tensors, transport.device)
    incoming = torch.empty_like(outgoing)
    header_in = transport.empty_header()
    header_out = transport.header(DiscriminatorState(order.iteration, holds, outgoing.numel()))
    target, source = order.send_to, order.receive_from
    stage = f"discriminator swap after iteration {order.iteration} (to rank {target}, from rank {source})"
    transport.exchange(
        stage, sends=[(target, header_out), (target, outgoing)], recvs=[(source, header_in), (source, incoming)]
    )
    arrived = transport.expect(header_in, source, stage, DiscriminatorState, numel=incoming.numel())
    unflatten_into(tensors, incoming)
    return arrived.born_on
