"""The moving average of G (gan.ema_halflife) against a computation by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mdgan_dist.algorithms.ema import GeneratorAverage, average_of, decay, final_generator
from mdgan_dist.checkpoint import shown_generator


def one_weight(value: float) -> nn.Module:
    """A module whose only state is one weight, set to `value`."""
    module = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(value)
    return module


def test_decay_halves_a_weight_after_one_halflife_and_ramps_up_early() -> None:
    assert decay(100, 1000) ** 100 == pytest.approx(0.5)
    # Early on the halflife is half the iterations done: at iteration 10 it is 5.
    assert decay(100, 10) == pytest.approx(0.5 ** (1 / 5))
    assert decay(100, 1) == pytest.approx(0.25)
    assert decay(100, 200) == decay(100, 5000)


def test_the_average_of_a_weight_follows_the_formula_by_hand() -> None:
    halflife = 3.0
    model = one_weight(0.0)
    average = GeneratorAverage(model, halflife)
    expected = 0.0
    for t, value in enumerate([1.0, 2.0, -4.0, 8.0, 0.5, 3.0, 7.0, -1.0, 2.0, 5.0], start=1):
        model.weight.data.fill_(value)
        average.update(model, t)
        h = min(halflife, t / 2)  # 0.5, 1, 1.5, 2, 2.5, then 3
        kept = 0.5 ** (1 / h)
        expected = kept * expected + (1 - kept) * value
        assert average.model.weight.item() == pytest.approx(expected, rel=1e-6)
    assert average.iteration == 10
    assert not average.model.weight.requires_grad
    # The trained model is left as it is.
    assert model.weight.item() == 5.0 and model.weight.requires_grad


def test_folding_several_iterations_at_once_equals_folding_them_one_by_one() -> None:
    """FL-GAN's server G stays as it is between averagings: one update over k iterations."""
    stepwise, at_once = GeneratorAverage(one_weight(0.0), 50), GeneratorAverage(one_weight(0.0), 50)
    model = one_weight(1.0)
    for t in range(1, 41):
        stepwise.update(model, t)
    at_once.update(model, 40)
    assert at_once.model.weight.item() == pytest.approx(stepwise.model.weight.item(), rel=1e-6)
    kept = math.prod(decay(50, t) for t in range(1, 41))
    assert at_once.model.weight.item() == pytest.approx(1 - kept, rel=1e-6)
    with pytest.raises(ValueError, match="go back"):
        at_once.update(model, 39)


def test_batchnorm_statistics_are_averaged_and_counters_copied() -> None:
    model = nn.BatchNorm1d(2)
    average = GeneratorAverage(model, 1.0)
    model.running_mean.fill_(4.0)
    model.num_batches_tracked.fill_(7)
    average.update(model, 1)  # h = 1/2: the average keeps a quarter of itself
    assert average.model.running_mean.tolist() == [3.0, 3.0]
    assert average.model.num_batches_tracked.item() == 7


def test_state_round_trip_and_what_generator_files_hold() -> None:
    model = one_weight(2.0)
    average = GeneratorAverage(one_weight(0.0), 10)
    average.update(model, 4)
    restored = GeneratorAverage(one_weight(-1.0), 10)
    restored.load_state_dict(average.state_dict())
    assert restored.iteration == 4 and restored.model.weight.item() == average.model.weight.item()

    final = final_generator(model, average, 4)
    assert final["generator"]["weight"].item() == average.model.weight.item()
    assert final["raw_generator"]["weight"].item() == 2.0
    assert shown_generator(final) is final["generator"]
    # A server checkpoint holds the raw G under "generator"; what is shown is its average.
    checkpoint = {"generator": model.state_dict(), "average": average.state_dict()}
    assert shown_generator(checkpoint)["weight"].item() == average.model.weight.item()
    assert shown_generator({"generator": model.state_dict(), "average": None})["weight"].item() == 2.0
    assert sorted(final_generator(model, None, 4)) == ["generator", "iteration"]


def test_halflife_zero_turns_the_average_off() -> None:
    assert average_of(one_weight(1.0), 0) is None
    assert isinstance(average_of(one_weight(1.0), 5), GeneratorAverage)
    with pytest.raises(ValueError, match="positive halflife"):
        GeneratorAverage(one_weight(1.0), -1)
