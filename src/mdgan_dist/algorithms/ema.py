"""The generator average: an exponential moving average (EMA) of G's weights, kept next to G.

Adam moves every weight of G by about the learning rate at every step, whatever the size of its
gradient, so G's weights carry step-to-step noise; averaging them over the last few hundred steps
removes it (docs/studies.md, "Salt noise"). The average is what samples, grids, scores and the
final generator.pt show; G itself trains exactly as without it, and nothing about it travels.

Iteration t folds G in with weight 1 - 0.5^(1 / h_t): after h_t more iterations a weight of the
average counts half. h_t = min(gan.ema_halflife, t / 2): early in a run the average spans at most
the second half of the iterations so far, so the random initial weights fade out quickly.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

# h_t is at most this fraction of the iterations done.
RAMP = 0.5


def decay(halflife: float, iteration: int) -> float:
    """What the average keeps of itself at iteration `iteration` (1-based)."""
    return 0.5 ** (1.0 / min(halflife, RAMP * iteration))


class GeneratorAverage:
    """An EMA copy of a generator, updated from it in place of a training step of its own."""

    def __init__(self, generator: nn.Module, halflife: float) -> None:
        if halflife <= 0:
            raise ValueError(f"an average needs a positive halflife, got {halflife}")
        self.halflife = halflife
        self.model = copy.deepcopy(generator).requires_grad_(False)
        self.iteration = 0  # the last iteration folded in

    @torch.no_grad()
    def update(self, generator: nn.Module, iteration: int) -> None:
        """Folds in iterations self.iteration + 1 .. iteration, with G as `generator` is now in all
        of them: one iteration for a G that steps every iteration; FL-GAN's server G stays as it is
        between two averagings, and the iterations since the last one are folded in at once.

        Floating-point state (weights, BatchNorm's running statistics) is averaged; integer
        counters are copied."""
        if iteration < self.iteration:
            raise ValueError(f"the average holds iteration {self.iteration}, asked to go back to {iteration}")
        kept = 1.0
        for t in range(self.iteration + 1, iteration + 1):
            kept *= decay(self.halflife, t)
        for average, current in zip(self.model.state_dict().values(), generator.state_dict().values(), strict=True):
            if average.is_floating_point():
                average.lerp_(current, 1.0 - kept)
            else:
                average.copy_(current)
        self.iteration = iteration

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.iteration = state["iteration"]


def average_of(generator: nn.Module, halflife: float) -> GeneratorAverage | None:
    """The average that gan.ema_halflife asks for; None when it is 0 (off)."""
    return GeneratorAverage(generator, halflife) if halflife > 0 else None


def final_generator(generator: nn.Module, average: GeneratorAverage | None, iterations: int) -> dict[str, Any]:
    """What generator.pt holds: under "generator" the G that samples and scores came from (the
    average, when there is one), and the raw G under "raw_generator"."""
    if average is None:
        return {"generator": generator.state_dict(), "iteration": iterations}
    return {"generator": average.model.state_dict(), "raw_generator": generator.state_dict(), "iteration": iterations}
