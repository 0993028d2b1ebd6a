"""The non-finite guard: a NaN or an infinity stops the run where it appears (errors.NonFiniteError,
naming the rank, the iteration and the quantity), before it reaches G's step or a checkpoint."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from mdgan_dist.errors import NonFiniteError


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every value is finite, from one sum per tensor: a NaN or an infinity anywhere makes
    the sum non-finite (so does a sum beyond float32's range, from values that diverged anyway;
    float16 and bfloat16 payloads are summed in float32).
    Several times cheaper than isfinite().all(), which the per-iteration checks cannot afford."""
    sums = [tensor.sum(dtype=torch.float32) for tensor in tensors if tensor.is_floating_point()]
    return not sums or bool(torch.isfinite(torch.stack(sums).sum()))


def require_finite(values: Iterable[float], rank: int, iteration: int, quantity: str) -> None:
    if not all(math.isfinite(value) for value in values):
        raise NonFiniteError(rank, iteration, quantity)


def gradient_check(rank: int, iteration: int) -> Callable[[list[torch.Tensor]], None]:
    """steps.generator_step's check: G's gradient must be finite, or G does not step."""

    def check(gradients: list[torch.Tensor]) -> None:
        if not all_finite(gradients):
            raise NonFiniteError(rank, iteration, "G's gradient")

    return check


def require_finite_state(state: Any, rank: int, iteration: int, what: str) -> None:
    """Every floating tensor in a state about to be saved is finite; else names the first that is not."""
    for path, tensor in _tensors(state, what):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteError(rank, iteration, path)


def _tensors(value: Any, path: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{path}[{index}]")
