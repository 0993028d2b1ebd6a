"""How G and D run on the hardware: bf16 autocast, channels_last, torch.compile (train.precision,
train.channels_last, train.compile). None of it changes what the algorithms compute, only how.

A prepared model carries its policy, so the step functions (steps.py) run every model the same way
whoever built it, and a model built without one (the tests' references) runs as plain float32.
Parameters, optimizer state, losses, feedback and messages stay float32 in every mode: under bf16
only the forward passes of G and D are autocast, and their outputs are cast back before any loss.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from mdgan_dist.config import Precision, TrainConfig


@dataclass(frozen=True)
class Policy:
    bf16: bool = False  # forward passes under torch.autocast(dtype=torch.bfloat16)
    channels_last: bool = False  # the model's 4-d weights and its image inputs in channels_last


PLAIN = Policy()
_ATTRIBUTE = "acceleration_policy"


def is_convolutional(module: nn.Module) -> bool:
    return any(isinstance(layer, nn.modules.conv._ConvNd) for layer in module.modules())


def prepare_model(module: nn.Module, cfg: TrainConfig) -> nn.Module:
    """The model in channels_last when asked and it has convolutions, and compiled when asked; in
    place, returned for chaining. A later `.to(device)` keeps all of it: it preserves the memory
    format, and compilation happens at the first call."""
    policy = Policy(bf16=cfg.precision == Precision.bf16, channels_last=cfg.channels_last and is_convolutional(module))
    if policy.channels_last:
        module.to(memory_format=torch.channels_last)
    setattr(module, _ATTRIBUTE, policy)
    if cfg.compile:
        # nn.Module.compile, not torch.compile(module): the state_dict keys stay those of the
        # plain model, so checkpoints, swaps and generator.pt do not depend on train.compile.
        module.compile()
    return module


def policy_of(module: nn.Module) -> Policy:
    return getattr(module, _ATTRIBUTE, PLAIN)


def autocast(policy: Policy, device_type: str) -> AbstractContextManager[None]:
    """torch.autocast to bf16 under precision=bf16, nothing otherwise."""
    if policy.bf16:
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def in_memory_format(policy: Policy, images: torch.Tensor) -> torch.Tensor:
    """An image batch [b, C, H, W] in channels_last when the model uses it; anything else as is."""
    if policy.channels_last and images.dim() == 4:
        return images.contiguous(memory_format=torch.channels_last)
    return images


def forward(module: nn.Module, inputs: torch.Tensor, parameters: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """module(inputs) as the module's policy says; the output always float32 and contiguous (it is
    sent as a message or fed to a loss). A plain model: exactly module(inputs). parameters: run
    the module with these in place of its own (torch.func.functional_call), e.g. a snapshot."""

    def call(x: torch.Tensor) -> torch.Tensor:
        return module(x) if parameters is None else torch.func.functional_call(module, parameters, (x,))

    policy = policy_of(module)
    if policy == PLAIN:
        return call(inputs)
    with autocast(policy, inputs.device.type):
        output = call(in_memory_format(policy, inputs))
    return output.float().contiguous()
