"""The discriminators one worker process hosts (mdgan.workers_per_rank = W), as one stack.

The W discriminators share an architecture, so their parameters are held stacked, [W, ...] per
tensor, and every forward and backward pass runs once over all of them (torch.func.vmap over
torch.func.functional_call) instead of W times in a loop. One Adam over the stacked tensors is W
Adams side by side, since Adam is elementwise and a process's workers always step together.

A slot is one position in the stack. Discriminators move between slots (the swaps), so a slot
is not a discriminator: `holds` elsewhere says which D a slot has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from mdgan_dist.algorithms.acceleration import forward

ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")
SlotArgument = torch.Tensor | dict[str, torch.Tensor] | None  # [W, ...] per tensor; None: none for any slot


class DiscriminatorStack:
    def __init__(self, modules: list[nn.Module]) -> None:
        """modules: the W discriminators, built and prepared (acceleration.prepare_model) alike;
        the first one runs every slot's parameters (its own are not used once stacked)."""
        self.count = len(modules)
        self.template = modules[0]
        parameters, buffers = torch.func.stack_module_state(modules)
        self.params: dict[str, torch.Tensor] = parameters  # leaves [W, ...] that require grad
        self.buffers: dict[str, torch.Tensor] = buffers
        # A slot's state in state_dict order: what a checkpoint, a final file and a swap carry.
        state = {**parameters, **buffers}
        self.state = {name: state[name] for name in self.template.state_dict()}

    def per_slot(self, function: Callable[..., torch.Tensor], *arguments: SlotArgument) -> torch.Tensor:
        """function on each slot's share of the arguments, its outputs stacked [W, ...]. With one
        slot the function runs unbatched: vmap turns a linear layer into a batched matmul, whose
        rounding differs from a plain one, and one worker per process stays exactly an nn.Module."""
        if self.count == 1:
            return function(*(_slot_of(argument, 0) for argument in arguments)).unsqueeze(0)
        in_dims = tuple(None if argument is None else 0 for argument in arguments)
        return torch.func.vmap(function, in_dims=in_dims)(*arguments)

    def judge(self, images: torch.Tensor) -> torch.Tensor:
        """Every slot's D on its own images: [W, b, C, H, W] -> D's outputs [W, b(, 1 + classes)]."""
        return self.per_slot(self._judge_slot, self.params, self.buffers, images)

    def _judge_slot(
        self, parameters: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], images: torch.Tensor
    ) -> torch.Tensor:
        return forward(self.template, images, {**parameters, **buffers})

    def slot_state(self, slot: int) -> dict[str, torch.Tensor]:
        """One slot's D as the state_dict of one module (a copy)."""
        return {name: tensor[slot].detach().clone() for name, tensor in self.state.items()}

    def slot_tensors(self, slot: int, optimizer: torch.optim.Adam, with_optimizer: bool) -> list[torch.Tensor]:
        """What travels when the slot's D moves, in a fixed order, as views into the stack: its
        state in state_dict order, then per parameter its Adam step and moments."""
        tensors = [tensor[slot] for tensor in self.state.values()]
        if with_optimizer:
            for param in self.params.values():
                state = optimizer.state[param]
                if not state:  # Adam creates its state lazily; a swap before any step sends zeros
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    for name in ADAM_MOMENTS:
                        state[name] = torch.zeros_like(param, memory_format=torch.preserve_format)
                # One step count serves every slot: they step together, so they agree.
                tensors += [state["step"], *(state[name][slot] for name in ADAM_MOMENTS)]
        return tensors

    def parameters(self) -> Iterator[torch.Tensor]:
        """The stacked parameters, for the optimizer (steps.discriminator_adam)."""
        return iter(self.params.values())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: tensor.detach().clone() for name, tensor in self.state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if list(state) != list(self.state):
            raise ValueError(f"stacked discriminator state has keys {list(state)}, expected {list(self.state)}")
        with torch.no_grad():
            for name, tensor in self.state.items():
                tensor.copy_(state[name])


def _slot_of(argument: SlotArgument, slot: int) -> SlotArgument:
    if argument is None:
        return None
    if isinstance(argument, dict):
        return {name: tensor[slot] for name, tensor in argument.items()}
    return argument[slot]
