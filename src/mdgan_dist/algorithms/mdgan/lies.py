"""fault.byzantine_worker: workers that lie in their feedback, for robustness studies and tests.

A lying worker follows the protocol like any other; only what it computes differs (config.Lie).
noise, negate, amplify and reverse train their D as usual and falsify its feedback. The two free-riders
never train a D: their D steps are computed and Adam steps, but their D's parameters are put
back after each step (DiscriminatorCompute.step), so the D they hold never changes while Adam's
moments and step count move as an honest worker's, and a D they pass on at a swap carries the
state every process's stacked Adam expects (one step count for all its slots). `lazy` answers
with the feedback of the D it holds, `untrained` with that of a fresh D of its own that never
trains and never moves. A process may host liars and honest workers side by side.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mdgan_dist.config import Lie
from mdgan_dist.seeding import generator

AMPLIFICATION = 100.0
FREE_RIDERS = (Lie.lazy, Lie.untrained)


def falsified(lie: Lie, feedback: Tensor, seed: int, worker: int, iteration: int) -> Tensor:
    """What a noise, negate, amplify or reverse liar sends instead of its honest feedback [b, C, H,
    W]: the noise is drawn from a stream of (seed, worker, iteration), so a resumed run draws the same."""
    if lie == Lie.negate:
        return -feedback
    if lie == Lie.amplify:
        return feedback * AMPLIFICATION
    if lie == Lie.reverse:
        return feedback * -AMPLIFICATION
    assert lie == Lie.noise, f"{lie} is a free-rider: its feedback is its D's"
    noise = torch.randn(feedback.shape, generator=generator(seed, "lie", worker, iteration), dtype=feedback.dtype)
    noise = noise.to(feedback.device)
    return noise * (_sample_norms(feedback) / _sample_norms(noise))


def _sample_norms(batch: Tensor) -> Tensor:
    """Each sample's norm, shaped to scale the batch: [b, 1, 1, 1]."""
    return batch.flatten(1).norm(dim=1).view(-1, *[1] * (batch.dim() - 1))
