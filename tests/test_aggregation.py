"""The aggregation rules (mdgan.aggregate), in one process: each rule's upstream gradient is the
gradient of the generator loss it states, computed by autograd on per-sample losses."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from mdgan_dist.algorithms.aggregation import AGGREGATIONS, NETWORK_JUDGES, Judgements, aggregate, sorted_over_judges
from mdgan_dist.algorithms.mdgan.schedule import feedback_batch
from mdgan_dist.algorithms.steps import generator_feedback, generator_loss, sample_latent
from mdgan_dist.config import Aggregate, GANConfig, ModelConfig
from mdgan_dist.models import build_discriminator, build_generator
from mdgan_dist.models.sampling import generator_input

SHAPE = (1, 28, 28)
CLASSES = 10
BATCH = 8
# Per judge, the classes its shard holds: 2 each, every class on 2 workers, as data.split=classes.
HOLDS = [frozenset({n % CLASSES, (n + 1) % CLASSES}) for n in range(2 * CLASSES)]
# weight(rule, judge's verdicts on its batch, the batch's labels, judge, the batch's judges) -> per sample
Weight = Callable[[torch.Tensor, torch.Tensor, int, list[int]], torch.Tensor]


def class_aware_weight(verdicts: torch.Tensor, labels: torch.Tensor, judge: int, judges: list[int]) -> torch.Tensor:
    holds = torch.tensor([[int(label) in HOLDS[n] for label in labels] for n in judges], dtype=torch.float64)
    mine = holds[judges.index(judge)]
    count = holds.sum(0)
    return torch.where(count > 0, mine / count.clamp(min=1), 1 / len(judges))


def forgiving_weight(verdicts: torch.Tensor, labels: torch.Tensor, judge: int, judges: list[int]) -> torch.Tensor:
    return (verdicts.argmax(0) == judges.index(judge)).double()


def mean_weight(verdicts: torch.Tensor, labels: torch.Tensor, judge: int, judges: list[int]) -> torch.Tensor:
    return torch.full((BATCH,), 1 / len(judges), dtype=torch.float64)


WEIGHTS: dict[str, Weight] = {"mean": mean_weight, "class_aware": class_aware_weight, "forgiving": forgiving_weight}


def test_every_choice_of_mdgan_aggregate_has_its_rule() -> None:
    assert set(AGGREGATIONS) == set(Aggregate)


@pytest.mark.parametrize("rule", list(WEIGHTS))
@pytest.mark.parametrize("conditioning", ["acgan", "projection"])
@pytest.mark.parametrize("num_workers,k", [(4, 1), (9, 3)])
def test_each_rule_is_the_gradient_of_its_stated_loss(rule: str, conditioning: str, num_workers: int, k: int) -> None:
    """G's loss under a rule: sum over batches j of (|J_j| / N) x the mean over the samples x of
    batch j of sum over its judges n of w_n(x) l_n(x), with l_n(x) the generator loss of D_n on x
    alone and w the rule's weights (docstring of aggregation.py), written here independently."""
    torch.manual_seed(0)
    gan, model = GANConfig(conditioning=conditioning), ModelConfig(width=0.0625)
    gen = build_generator(model, SHAPE, CLASSES)
    discs = [build_discriminator(model, SHAPE, CLASSES) for _ in range(num_workers)]
    noise, labels = sample_latent(torch.Generator().manual_seed(1), k * BATCH, model.z_dim, CLASSES)
    assert labels is not None
    labels = labels.view(k, BATCH)

    def generate() -> torch.Tensor:
        return gen(generator_input(noise, labels.flatten(), CLASSES)).view(k, BATCH, *SHAPE)

    generated = generate()
    judged = [
        generator_feedback(discs[n], generated[feedback_batch(n, k)], gan, labels[n % k]) for n in range(num_workers)
    ]
    judgements = Judgements(
        [answer.feedback for answer in judged],
        [feedback_batch(n, k) for n in range(num_workers)],
        k,
        labels,
        [answer.verdicts for answer in judged],
        HOLDS[:num_workers],
    )
    via_rule = torch.autograd.grad(generated, list(gen.parameters()), aggregate(rule, judgements))

    generated = generate()
    loss = torch.zeros((), dtype=torch.float64)
    for batch in range(k):
        judges = [n for n in range(num_workers) if feedback_batch(n, k) == batch]
        verdicts = torch.stack([judged[n].verdicts for n in judges])
        for n in judges:
            weights = WEIGHTS[rule](verdicts, labels[batch], n, judges)
            output = discs[n](generated[batch])  # D has no layer across samples: each row is D(x) alone
            for i in range(BATCH):
                sample_loss = generator_loss(output[i : i + 1], gan.loss, labels[batch, i : i + 1], conditioning)
                loss = loss + len(judges) / num_workers * weights[i] * sample_loss / BATCH
    direct = torch.autograd.grad(loss.float(), list(gen.parameters()))
    for a, b in zip(via_rule, direct, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in direct)


def hand_judgements(holds: list[frozenset[int]], labels: list[int], verdicts: list[list[float]]) -> Judgements:
    """One batch of len(labels) samples judged by len(holds) judges whose feedback is judge + 1
    on every value: the upstream gradient then shows which judge each sample followed."""
    feedbacks = [torch.full((len(labels), 1, 2, 2), float(n + 1)) for n in range(len(holds))]
    return Judgements(
        feedbacks,
        [0] * len(holds),
        1,
        torch.tensor([labels]),
        [torch.tensor(v) for v in verdicts],
        holds,
    )


def test_class_aware_follows_the_holders_of_a_class_and_all_judges_when_none_holds_it() -> None:
    # Judges 0, 1, 2 hold {0, 1}, {1, 2}, {3}; samples of classes 0, 1, 3 and 5.
    judged = hand_judgements([frozenset({0, 1}), frozenset({1, 2}), frozenset({3})], [0, 1, 3, 5], [[0.0] * 4] * 3)
    upstream = aggregate("class_aware", judged)[0, :, 0, 0, 0]
    # |J| / N = 1; class 0: judge 0 alone (1); class 1: judges 0 and 1 (1.5); class 3: judge 2 (3);
    # class 5: nobody holds it, all three judges ((1 + 2 + 3) / 3 = 2).
    torch.testing.assert_close(upstream, torch.tensor([1.0, 1.5, 3.0, 2.0]))
    assert torch.equal(aggregate("mean", judged)[0, :, 0, 0, 0], torch.full((4,), 2.0))


def test_forgiving_follows_the_judge_that_finds_each_sample_the_most_real() -> None:
    verdicts = [[0.0, 5.0, -1.0], [2.0, 1.0, -1.0], [1.0, 0.0, -1.0]]  # judge rows, sample columns
    judged = hand_judgements([frozenset()] * 3, [0, 0, 0], verdicts)
    # Sample 0: judge 1; sample 1: judge 0; sample 2: a tie, the first judge.
    torch.testing.assert_close(aggregate("forgiving", judged)[0, :, 0, 0, 0], torch.tensor([2.0, 1.0, 1.0]))


def test_class_aware_on_shards_that_hold_every_class_is_the_mean() -> None:
    everything = frozenset(range(CLASSES))
    torch.manual_seed(0)
    feedbacks = [torch.randn(BATCH, *SHAPE) for _ in range(5)]
    batch_of = [feedback_batch(n, 2) for n in range(5)]
    labels = torch.randint(CLASSES, (2, BATCH))
    judged = Judgements(feedbacks, batch_of, 2, labels, None, [everything] * 5)
    torch.testing.assert_close(aggregate("class_aware", judged), aggregate("mean", judged))


def test_mean_is_the_papers_sum_over_n_per_batch() -> None:
    """Bit for bit what it always computed: the sum of each batch's feedback, then one division by N."""
    torch.manual_seed(0)
    feedbacks = [torch.randn(BATCH, *SHAPE) for _ in range(5)]
    upstream = aggregate("mean", Judgements(feedbacks, [0, 1, 0, 1, 0], 2))
    assert torch.equal(upstream[0], (feedbacks[0] + feedbacks[2] + feedbacks[4]) / 5)
    assert torch.equal(upstream[1], (feedbacks[1] + feedbacks[3]) / 5)


def values_judged(*values: list[float], trim: int = 1) -> Judgements:
    """One batch of len(values[0]) samples of one value each, judge n's feedback values[n]."""
    return Judgements([torch.tensor(v).view(-1, 1, 1, 1) for v in values], [0] * len(values), 1, trim=trim)


def upstream_values(rule: str, judged: Judgements) -> list[float]:
    return aggregate(rule, judged)[0, :, 0, 0, 0].tolist()


def test_the_median_is_each_values_middle_judge_and_ignores_a_minority_of_liars() -> None:
    # 3 judges, one of them lying by +100 and -100 on the two samples: the median is an honest one.
    assert upstream_values("median", values_judged([1.0, 2.0], [3.0, 4.0], [100.0, -100.0])) == [3.0, 2.0]
    # An even count: the mean of the two middle ones.
    assert upstream_values("median", values_judged([1.0], [2.0], [3.0], [100.0])) == [2.5]


def test_the_trimmed_mean_drops_trim_values_at_each_end() -> None:
    judged = values_judged([1.0], [2.0], [3.0], [4.0], [-50.0], trim=1)
    assert upstream_values("trimmed_mean", judged) == [2.0]  # mean of 1, 2, 3
    judged = values_judged([1.0], [2.0], [3.0], [4.0], [-50.0], trim=2)
    assert upstream_values("trimmed_mean", judged) == [2.0]  # the median: 2


def test_clipping_bounds_each_judges_feedback_by_the_median_norm_of_a_sample() -> None:
    # Sample norms 3, 4 and 500 (a judge amplifying 100x): the median norm is 4, so the third is
    # scaled to norm 4 along its own direction, the others stay; then the mean of the three.
    judges = [torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0]), torch.tensor([300.0, 400.0])]
    judged = Judgements([j.view(1, 1, 1, 2) for j in judges], [0, 0, 0], 1)
    upstream = aggregate("clipped", judged)[0, 0, 0, 0]
    torch.testing.assert_close(upstream, (judges[0] + judges[1] + torch.tensor([2.4, 3.2])) / 3)


def points_judged(*points: list[float]) -> Judgements:
    """One batch of one sample, judge n's feedback of it the point points[n]."""
    return Judgements([torch.tensor(point).view(1, 1, 1, -1) for point in points], [0] * len(points), 1)


def geometric_median_of(*points: list[float]) -> torch.Tensor:
    return aggregate("geometric_median", points_judged(*points))[0, 0, 0, 0]


def test_the_geometric_median_ignores_a_far_off_judge_and_is_the_mean_of_two() -> None:
    # Four judges about the origin and one 1,414 away: the mean is pulled 283 away, the geometric
    # median (0, 0) after the stated passes stays within the honest judges' reach.
    honest = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]
    torch.testing.assert_close(
        aggregate("mean", points_judged(*honest, [1000.0, 1000.0]))[0, 0, 0, 0], 200 * torch.ones(2)
    )
    assert geometric_median_of(*honest, [1000.0, 1000.0]).norm() < 1.5
    # Two judges: every point between them is a geometric median; the rule keeps their mean.
    torch.testing.assert_close(geometric_median_of([1.0, 5.0], [3.0, -1.0]), torch.tensor([2.0, 2.0]))


def test_the_geometric_medians_passes_from_the_mean_bound_a_liar_up_to_a_size_only() -> None:
    """Each pass divides a far-off liar's pull by about the honest judges' count over the liars':
    a liar a million away among five moves it by a thousand, where the coordinate-wise median
    stays among the honest judges (docs/design.md)."""
    honest = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]
    far = geometric_median_of(*honest, [1e6, 1e6])
    assert 500 < far[0] < 2000 and far[0] == far[1]
    assert aggregate("median", points_judged(*honest, [1e6, 1e6]))[0, 0, 0, 0].abs().max() <= 1


def test_the_geometric_median_nears_a_known_one_where_the_mean_lies_elsewhere() -> None:
    """The right triangle (0, 0), (2, 0), (0, 2): its geometric median is the Fermat point, where
    the three judges are seen 120 degrees apart, (1 - 1 / sqrt(3)) x (1, 1), and its mean (2/3, 2/3).
    The stated passes of smoothed Weiszfeld from the mean leave less than a sixth of the way between them."""
    known = (1 - 3**-0.5) * torch.ones(2)
    found = geometric_median_of([0.0, 0.0], [2.0, 0.0], [0.0, 2.0])
    assert (found - known).norm() < (torch.full((2,), 2 / 3) - known).norm() / 6


def test_a_robust_rule_scales_each_batch_by_its_share_of_the_judges_as_the_mean() -> None:
    """Honest judges that agree: every robust rule gives the mean's gradient."""
    torch.manual_seed(0)
    same = torch.randn(BATCH, *SHAPE)
    judged = Judgements([same.clone() for _ in range(6)], [0, 1, 0, 1, 0, 1], 2)
    for rule in ("median", "trimmed_mean", "clipped", "geometric_median"):
        torch.testing.assert_close(aggregate(rule, judged), aggregate("mean", judged))


@pytest.mark.parametrize("judges", [1, 2, 3, 10, NETWORK_JUDGES, NETWORK_JUDGES + 1])
def test_the_judges_values_are_sorted_as_torch_sorts_them(judges: int) -> None:
    """The sorting network, and torch.sort beyond it, with a tie among the values."""
    values = torch.randn(judges, 4, 1, 3, 3, generator=torch.Generator().manual_seed(judges))
    values[0, 0] = values[-1, 0]  # a tie
    assert torch.equal(sorted_over_judges(values), values.sort(0).values)
