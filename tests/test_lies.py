"""Lying workers (fault.byzantine_worker) and the server's outlier watch, in one process: what each
lie sends, and which judges the watch finds far off and names after a streak."""

from __future__ import annotations

import torch

from mdgan_dist.algorithms.aggregation import Judgements
from mdgan_dist.algorithms.mdgan.lies import AMPLIFICATION, falsified
from mdgan_dist.algorithms.mdgan.outliers import OUTLIER_RATIO, OutlierWatch, outlying
from mdgan_dist.config import Lie

HONEST = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_negate_and_amplify_are_exact() -> None:
    assert torch.equal(falsified(Lie.negate, HONEST, 0, 3, 7), -HONEST)
    assert torch.equal(falsified(Lie.amplify, HONEST, 0, 3, 7), HONEST * AMPLIFICATION)


def test_noise_has_each_samples_honest_norm_and_its_own_stream() -> None:
    noise = falsified(Lie.noise, HONEST, 0, 3, 7)
    torch.testing.assert_close(noise.flatten(1).norm(dim=1), HONEST.flatten(1).norm(dim=1))
    cosine = torch.nn.functional.cosine_similarity(noise.flatten(1), HONEST.flatten(1))
    assert cosine.abs().max() < 0.2  # 784 dimensions: a random direction, not the honest one
    assert torch.equal(noise, falsified(Lie.noise, HONEST, 0, 3, 7))  # a resumed run draws the same
    assert not torch.equal(noise, falsified(Lie.noise, HONEST, 0, 3, 8))
    assert not torch.equal(noise, falsified(Lie.noise, HONEST, 0, 4, 7))


def judgements(feedbacks: list[torch.Tensor], batch_of: list[int]) -> Judgements:
    return Judgements(feedbacks, batch_of, max(batch_of) + 1)


def scattered(count: int, seed: int) -> list[torch.Tensor]:
    """Honest judges: one gradient, each seen through its own D (a little scatter)."""
    rng = torch.Generator().manual_seed(seed)
    return [HONEST + 0.1 * torch.randn(HONEST.shape, generator=rng) for _ in range(count)]


def test_an_amplified_or_negated_judge_is_far_off_and_honest_ones_are_not() -> None:
    feedbacks = scattered(5, 1)
    feedbacks[1] = falsified(Lie.amplify, feedbacks[1], 0, 1, 0)
    feedbacks[3] = falsified(Lie.negate, feedbacks[3], 0, 3, 0)
    far = outlying(judgements(feedbacks, [0] * 5))
    assert sorted(far) == [1, 3] and all(ratio > OUTLIER_RATIO for ratio in far.values())


def test_judges_are_compared_within_their_batch_and_batches_of_two_are_not_judged() -> None:
    # Batch 0: judges 0, 2, 4 (judge 4 amplifies); batch 1: judges 1, 3 (judge 3 amplifies, but
    # two judges have no median to stray from).
    feedbacks = scattered(5, 2)
    feedbacks[4], feedbacks[3] = feedbacks[4] * 100, feedbacks[3] * 100
    assert list(outlying(judgements(feedbacks, [0, 1, 0, 1, 0]))) == [4]


def test_a_worker_is_named_after_a_streak_once_and_a_break_resets_it() -> None:
    watch = OutlierWatch(iterations=3)
    judges = [(1, 0), (2, 0), (3, 0), (4, 0)]

    def iteration(liar: int | None, seed: int) -> list[int]:
        feedbacks = scattered(4, seed)
        if liar is not None:
            feedbacks[liar] = feedbacks[liar] * AMPLIFICATION
        return watch.observe(judges, judgements(feedbacks, [0] * 4), seed, per_rank=1, dropping=False)

    assert iteration(2, 0) == [] and iteration(2, 1) == []
    assert iteration(None, 2) == []  # the streak breaks
    assert iteration(2, 3) == [] and iteration(2, 4) == []
    assert iteration(2, 5) == [3]  # rank 3 (judge 2) after 3 in a row
    assert iteration(2, 6) == []  # named once
    assert watch.named == [(3, 0)]
