"""Lying workers (fault.byzantine_worker) and the server's outlier watch, in one process: what each
lie sends, and which judges the watch finds far off and names after a streak."""

from __future__ import annotations

from pathlib import Path

import torch

from mdgan_dist.algorithms.aggregation import Judgements
from mdgan_dist.algorithms.mdgan.lies import AMPLIFICATION, falsified
from mdgan_dist.algorithms.mdgan.outliers import OUTLIER_RATIO, OutlierWatch, distance_ratios, outlying
from mdgan_dist.checkpoint import atomic_save, load
from mdgan_dist.config import Lie

HONEST = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_negate_amplify_and_reverse_are_exact() -> None:
    assert torch.equal(falsified(Lie.negate, HONEST, 0, 3, 7), -HONEST)
    assert torch.equal(falsified(Lie.amplify, HONEST, 0, 3, 7), HONEST * AMPLIFICATION)
    assert torch.equal(falsified(Lie.reverse, HONEST, 0, 3, 7), HONEST * -AMPLIFICATION)


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
    far = outlying(distance_ratios(judgements(feedbacks, [0] * 5)))
    assert sorted(far) == [1, 3] and all(ratio > OUTLIER_RATIO for ratio in far.values())
    # The watch logs the largest ratio of the iteration, the liars' or, without them, an honest one's.
    watch = OutlierWatch(iterations=3)
    watch.observe([1], judgements(feedbacks, [0] * 5), 0, 5, dropping=False)
    assert watch.scalars() == {"workers_named": 0, "outlier_ratio_max": max(far.values())}
    watch.observe([1], judgements(scattered(5, 1), [0] * 5), 1, 5, dropping=False)
    assert 0 < watch.scalars()["outlier_ratio_max"] < OUTLIER_RATIO


def test_judges_are_compared_within_their_batch_and_batches_of_two_are_not_judged() -> None:
    # Batch 0: judges 0, 2, 4 (judge 4 amplifies); batch 1: judges 1, 3 (judge 3 amplifies, but
    # two judges have no median to stray from).
    feedbacks = scattered(5, 2)
    feedbacks[4], feedbacks[3] = feedbacks[4] * 100, feedbacks[3] * 100
    assert list(outlying(distance_ratios(judgements(feedbacks, [0, 1, 0, 1, 0])))) == [4]


def test_a_worker_is_named_after_a_streak_once_and_a_break_resets_it() -> None:
    watch = OutlierWatch(iterations=3)

    def iteration(liar: int | None, seed: int) -> list[int]:
        feedbacks = scattered(4, seed)
        if liar is not None:
            feedbacks[liar] = feedbacks[liar] * AMPLIFICATION
        return watch.observe([1, 2, 3, 4], judgements(feedbacks, [0] * 4), seed, per_rank=1, dropping=False)

    assert iteration(2, 0) == [] and iteration(2, 1) == []
    assert iteration(None, 2) == []  # the streak breaks
    assert iteration(2, 3) == [] and iteration(2, 4) == []
    assert iteration(2, 5) == [3]  # rank 3 (judge 2) after 3 in a row
    assert iteration(2, 6) == []  # named once
    assert watch.named == [(3, 0)]


def test_a_watch_restored_from_its_checkpointed_state_names_when_an_uninterrupted_one_does(tmp_path: Path) -> None:
    """Three processes of two workers. Worker (3, 1) lies in iterations 0 to 2 and is named at 2;
    worker (1, 1) lies from 2 on. The watch's state goes through a checkpoint file (read as
    checkpoint.load reads the server's) after iteration 3, in the middle of (1, 1)'s streak."""
    liars = [[5], [5], [5, 1], [1], [1], [1]]  # per iteration, the positions of the lying judges

    def iteration(watch: OutlierWatch, index: int) -> list[int]:
        feedbacks = scattered(6, index)
        for liar in liars[index]:
            feedbacks[liar] = feedbacks[liar] * AMPLIFICATION
        return watch.observe([1, 2, 3], judgements(feedbacks, [0] * 6), index, per_rank=2, dropping=False)

    straight, stopped = OutlierWatch(iterations=3), OutlierWatch(iterations=3)
    assert [iteration(straight, index) for index in range(4)] == [[], [], [3], []]
    assert [iteration(stopped, index) for index in range(4)] == [[], [], [3], []]
    atomic_save({"outliers": stopped.state_dict()}, tmp_path / "server.pt")
    resumed = OutlierWatch(iterations=3)
    resumed.load_state_dict(load(tmp_path / "server.pt", torch.device("cpu"))["outliers"])
    assert (
        [iteration(resumed, index) for index in (4, 5)] == [iteration(straight, index) for index in (4, 5)] == [[1], []]
    )
    assert resumed.named == straight.named == [(3, 1), (1, 1)]
    fresh = OutlierWatch(iterations=3)  # without the state: a new streak, nobody named by the end
    assert [iteration(fresh, index) for index in (4, 5)] == [[], []]
