"""DP-SGD for the discriminators a worker process hosts (privacy.*; privacy.py has the accounting).

A D step's generated half trains as usual (discriminators.py): it holds no record. Its real half
comes from a Poisson sample of the slot's shard (data.PoissonSampler): each record's gradient of
the real loss is computed alone (torch.func), clipped to norm C, the clipped gradients summed,
Gaussian noise of std sigma x C added, and the sum divided by the expected batch b (Abadi et al.
2016, as opacus does), so that no step depends on one record more than the accounting says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mdgan_dist.algorithms.acceleration import forward
from mdgan_dist.algorithms.mdgan.stack import DiscriminatorStack
from mdgan_dist.algorithms.steps import real_loss
from mdgan_dist.config import Config
from mdgan_dist.privacy import private_generator

# Added to a record's gradient norm before dividing by it, as opacus does: a zero gradient stays 0.
NORM_FLOOR = 1e-6


@dataclass
class PrivateBatch:
    """Every slot's Poisson sample of its shard, as its D sees it, padded to the largest with zeros."""

    images: Tensor  # W x m x C x H x W
    classes: Tensor | None  # W x m
    drawn: Tensor  # W x m: 1 where a record was drawn, 0 where padding is


def padded(drawn: list[tuple[Tensor, Tensor]], conditional: bool) -> PrivateBatch:
    """Stacks each slot's (images, classes) sample, of its own size, padding the smaller ones. No
    augmentation: privacy refuses it (privacy.validate_privacy)."""
    most = max(len(images) for images, _ in drawn)
    return PrivateBatch(
        torch.stack([_pad(images, most) for images, _ in drawn]),
        torch.stack([_pad(labels, most) for _, labels in drawn]) if conditional else None,
        torch.stack([_pad(torch.ones(len(images), device=images.device), most) for images, _ in drawn]),
    )


def per_record_gradients(
    stack: DiscriminatorStack, images: Tensor, classes: Tensor | None, loss: Callable[[Tensor, Tensor | None], Tensor]
) -> Tensor:
    """Each slot's gradient of loss(D(record), class) for each record alone, its parameters
    flattened in the stack's order: images W x m x ... -> W x m x P."""

    def record_loss(
        params: dict[str, Tensor], buffers: dict[str, Tensor], image: Tensor, label: Tensor | None
    ) -> Tensor:
        output = forward(stack.template, image.unsqueeze(0), {**params, **buffers})
        return loss(output, None if label is None else label.unsqueeze(0))

    def slot(params: dict[str, Tensor], buffers: dict[str, Tensor], images: Tensor, labels: Tensor | None) -> Tensor:
        in_dims = (None, None, 0, None if labels is None else 0)
        gradients = torch.func.vmap(torch.func.grad(record_loss), in_dims=in_dims)(params, buffers, images, labels)
        return torch.cat([gradient.flatten(1) for gradient in gradients.values()], dim=1)

    params = {name: param.detach() for name, param in stack.params.items()}
    return stack.per_slot(slot, params, stack.buffers, images, classes)


def clip_factors(gradients: Tensor, clip: float) -> Tensor:
    """What each record's gradient (... x P) is multiplied by for its norm to be at most `clip`."""
    return (clip / (gradients.norm(dim=-1) + NORM_FLOOR)).clamp(max=1.0)


class PrivateGradient:
    """The noisy, clipped gradient of the real half, one noise stream per worker of the process."""

    def __init__(self, cfg: Config, workers: list[int], noise_multiplier: float) -> None:
        self.gan, self.clip, self.batch = cfg.gan, cfg.privacy.clip, cfg.train.batch_size
        self.std = noise_multiplier * cfg.privacy.clip
        self.secret = cfg.privacy.secret_noise  # its streams then stay out of checkpoints
        self.noise = [private_generator(cfg, "noise", worker) for worker in workers]

    def real_half(self, stack: DiscriminatorStack, real: PrivateBatch) -> None:
        """The real half of one D step by DP-SGD, added to every slot's .grad. Its loss is not
        returned: it reads the records, and a private worker reports the generated half only."""
        gan = self.gan

        def records(output: Tensor, classes: Tensor | None) -> Tensor:
            return real_loss(output, gan.real_label, classes, gan.conditioning)

        self.accumulate(stack, real, records)

    def accumulate(
        self, stack: DiscriminatorStack, real: PrivateBatch, loss: Callable[[Tensor, Tensor | None], Tensor]
    ) -> None:
        """Adds (sum of clipped per-record gradients + N(0, std^2 I)) / b to every slot's .grad."""
        size = sum(param[0].numel() for param in stack.parameters())
        summed = torch.zeros(stack.count, size, device=real.images.device)
        if real.images.shape[1]:  # some slot drew a record
            gradients = per_record_gradients(stack, real.images, real.classes, loss)
            summed = torch.einsum("wm,wmp->wp", clip_factors(gradients, self.clip) * real.drawn, gradients)
        noise = torch.stack([torch.randn(size, generator=generator) for generator in self.noise])
        gradient = (summed + self.std * noise.to(summed.device)) / self.batch
        offset = 0
        for param in stack.parameters():
            piece = gradient[:, offset : offset + param[0].numel()].view_as(param)
            param.grad = piece if param.grad is None else param.grad + piece
            offset += param[0].numel()

    def state_dict(self) -> dict[str, Any]:
        return {"noise": [generator.get_state() for generator in self.noise]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for generator, saved in zip(self.noise, state["noise"], strict=True):
            generator.set_state(saved)


def _pad(values: Tensor, size: int) -> Tensor:
    return torch.cat([values, values.new_zeros(size - len(values), *values.shape[1:])])
