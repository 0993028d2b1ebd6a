"""How the workers' feedback becomes G's gradient (mdgan.aggregate): one registry entry per rule.

Each iteration, worker n judges one generated batch X_g(n) and returns its feedback F_n, the
gradient of its generator loss with respect to every sample of that batch. A rule turns the
feedback of all judges into the upstream gradient of the k batches, from which G's backward pass
starts. The server, the oracle's single-process reference and the bench call `aggregate` and
nothing else, so every rule is checked against its reference by the oracle.

The weighted rules give each sample x of batch j the gradient

    (|J_j| / N) * sum over the judges n in J_j of w_n(x) * F_n(x),    weights summing to 1 over J_j,

with J_j the judges of batch j and N all judges of the iteration: with equal weights, the mean.
The robust rules (median, trimmed_mean, clipped, geometric_median: workers that may lie) replace
the weighted sum over a batch's judges by a robust center of their feedback,
(|J_j| / N) * center(F_n, n in J_j).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from mdgan_dist.config import Aggregate


@dataclass(frozen=True)
class Judgements:
    """One iteration's feedback, judge by judge (a judge is a worker whose feedback G's step uses)."""

    feedbacks: Sequence[Tensor]  # per judge, F_n: [b, C, H, W]
    batch_of: Sequence[int]  # per judge, the index of the batch it judged
    num_batches: int  # k
    labels: Tensor | None = None  # [k, b]: the class each sample was generated for (conditional models)
    verdicts: Sequence[Tensor] | None = None  # per judge, D_n's real/fake logit of each sample: [b]
    holds: Sequence[frozenset[int]] | None = None  # per judge, the classes its shard holds
    trim: int = 1  # mdgan.trim: the values trimmed_mean drops at each end of a sample's judges'

    @cached_property
    def medians(self) -> dict[int, Tensor]:
        """Each judged batch's coordinate-wise median of its judges' feedback, computed once: the
        median rule's center and what the outlier watch measures from (mdgan/outliers.py)."""
        return centers(self, coordinate_median)


@dataclass(frozen=True)
class Rule:
    """An aggregation rule and what it needs; the checks (mdgan/checks.py) refuse a run that cannot
    give it that, and the roles send only what it needs."""

    combine: Callable[[Judgements], Tensor]
    verdicts: bool = False  # each worker sends its D's real/fake logit of every sample it judged
    class_sets: bool = False  # each worker tells the server, at start-up, which classes its shard holds
    labels: bool = False  # needs a conditional model: the samples' classes
    min_judges: int = 1  # judges per generated sample it needs (fewer: it is the mean)


def _zeros(judged: Judgements) -> Tensor:
    """The upstream gradient before any feedback is added: [k, b, C, H, W], as the feedback."""
    first = judged.feedbacks[0]
    return torch.zeros((judged.num_batches, *first.shape), dtype=first.dtype, device=first.device)


def judges_by_batch(judged: Judgements) -> dict[int, list[int]]:
    """Each judged batch's judges, as positions in judged.feedbacks."""
    by_batch: dict[int, list[int]] = {}
    for judge, batch in enumerate(judged.batch_of):
        by_batch.setdefault(batch, []).append(judge)
    return by_batch


def stacked(judged: Judgements, judges: list[int]) -> Tensor:
    """These judges' feedback, stacked: [judges, b, C, H, W]."""
    return torch.stack([judged.feedbacks[judge] for judge in judges])


def mean(judged: Judgements) -> Tensor:
    """The paper's rule: the sum of the F_n per batch, divided by N. With F_n the gradient of
    worker n's mean generator loss, this is the gradient of the mean over the N workers of their
    losses with respect to every generated sample."""
    upstream = _zeros(judged)
    for feedback, batch in zip(judged.feedbacks, judged.batch_of, strict=True):
        upstream[batch] += feedback
    return upstream / len(judged.feedbacks)


def weighted(judged: Judgements, weights: Tensor) -> Tensor:
    """The module docstring's sum: weights [judges, b] holds each judge's weight for each sample of
    its batch; a sample's weights over the judges of its batch sum to 1."""
    upstream = _zeros(judged)
    judges = torch.bincount(torch.tensor(list(judged.batch_of)), minlength=judged.num_batches).tolist()
    for feedback, batch, weight in zip(judged.feedbacks, judged.batch_of, weights, strict=True):
        scale = weight.to(feedback.device, feedback.dtype) * (judges[batch] / len(judged.feedbacks))
        upstream[batch].addcmul_(scale.view(-1, *[1] * (feedback.dim() - 1)), feedback)
    return upstream


def class_aware(judged: Judgements) -> Tensor:
    """A sample of class c follows only the judges whose shard holds c, equally weighted: a
    discriminator that never saw real samples of c does not judge them. A sample none of whose
    judges holds its class (possible only after a worker is lost: the checks refuse such a
    layout at start) follows all its judges, as with the mean."""
    assert judged.labels is not None and judged.holds is not None, "class_aware needs labels and class sets"
    labels = judged.labels.cpu()
    classes = 1 + max(int(labels.max()), *(max(held, default=0) for held in judged.holds))
    holds = torch.tensor([[c in held for c in range(classes)] for held in judged.holds], dtype=torch.float64)
    batch_of = torch.tensor(list(judged.batch_of))
    eligible = holds.gather(1, labels[batch_of])  # judge x sample of its batch: 1 where it holds the class
    count = torch.zeros(judged.num_batches, labels.shape[1], dtype=torch.float64).index_add_(0, batch_of, eligible)
    count = count[batch_of]  # per judge and sample: how many judges of the sample hold its class
    judges = torch.bincount(batch_of, minlength=judged.num_batches).to(torch.float64)[batch_of, None]
    return weighted(judged, torch.where(count > 0, eligible / count.clamp(min=1), 1 / judges))


def forgiving(judged: Judgements) -> Tensor:
    """F2U (Yonetani et al. 2019, arXiv 1905.09684): each sample follows its most forgiving judge,
    the one whose D finds it the most real (the largest real/fake logit; ties to the first judge):
    G is pushed towards the data of whichever shard the sample is closest to, not towards the
    average opinion of shards that hold other data. The gradient of G's loss under the maximum of
    the judges' verdicts is exactly that judge's feedback."""
    assert judged.verdicts is not None, "forgiving needs the judges' verdicts"
    verdicts = torch.stack([verdict.cpu() for verdict in judged.verdicts])  # judge x sample
    weights, samples = torch.zeros_like(verdicts), torch.arange(verdicts.shape[1])
    for judges in judges_by_batch(judged).values():
        chosen = torch.tensor(judges)[verdicts[judges].argmax(0)]  # per sample, the position of its judge
        weights[chosen, samples] = 1.0
    return weighted(judged, weights)


def centers(judged: Judgements, center: Callable[[Tensor, Judgements], Tensor]) -> dict[int, Tensor]:
    """Each judged batch's center of its judges' feedback (stacked: [|J_j|, b, C, H, W])."""
    return {batch: center(stacked(judged, judges), judged) for batch, judges in judges_by_batch(judged).items()}


def per_batch(judged: Judgements, center_of: Mapping[int, Tensor]) -> Tensor:
    """The robust rules: batch j's gradient is (|J_j| / N) x the center of its judges' feedback,
    where the mean's would be (|J_j| / N) x their average."""
    upstream = _zeros(judged)
    for batch, judges in judges_by_batch(judged).items():
        upstream[batch] = center_of[batch] * (len(judges) / len(judged.feedbacks))
    return upstream


def robust(center: Callable[[Tensor, Judgements], Tensor]) -> Callable[[Judgements], Tensor]:
    """The rule that takes each batch's center by `center` (per_batch)."""
    return lambda judged: per_batch(judged, centers(judged, center))


NETWORK_JUDGES = 64  # up to this many judges the network beats torch.sort: measured 14x at 16, 4x at 64


def sorted_over_judges(stacked: Tensor) -> Tensor:
    """The judges' values sorted, value by value: stacked.sort(0).values. A sample has few judges
    and many values, and torch.sort over a short leading dimension is slow (10x the network at 9
    judges of 64 x 784 values); an odd-even transposition network of elementwise minima and
    maxima sorts every value at once, with the same result."""
    if stacked.shape[0] > NETWORK_JUDGES:
        return stacked.sort(0).values
    rows = list(stacked.unbind(0))
    for round_ in range(len(rows)):
        for i in range(round_ % 2, len(rows) - 1, 2):
            rows[i], rows[i + 1] = torch.minimum(rows[i], rows[i + 1]), torch.maximum(rows[i], rows[i + 1])
    return torch.stack(rows)


def coordinate_median(stacked: Tensor, _judged: Judgements) -> Tensor:
    """Each value: the median of the judges' (the mean of the two middle ones for an even count).
    Fewer than half the judges lying cannot move it outside the honest judges' range."""
    values, count = sorted_over_judges(stacked), stacked.shape[0]
    return (values[(count - 1) // 2] + values[count // 2]) / 2


def coordinate_trimmed_mean(stacked: Tensor, judged: Judgements) -> Tensor:
    """Each value: the mean of the judges' without the `trim` lowest and `trim` highest (Yin et
    al. 2018, arXiv 1803.01498): robust to up to `trim` liars."""
    values, trim = sorted_over_judges(stacked), judged.trim
    return values[trim : stacked.shape[0] - trim].mean(0)


def norm_clipped_mean(stacked: Tensor, _judged: Judgements) -> Tensor:
    """The mean after each judge's feedback of a sample is clipped to the median of the judges'
    norms for that sample: one judge's gradient cannot outweigh the others' by its size (it can
    still point elsewhere, which the median and the trimmed mean catch)."""
    norms = stacked.flatten(2).norm(dim=2)  # judge x sample
    bound = norms.median(0).values  # torch's median: the lower middle one for an even count
    scale = (bound / norms.clamp(min=torch.finfo(norms.dtype).tiny)).clamp(max=1.0)
    return (stacked * scale.view(*scale.shape, *[1] * (stacked.dim() - 2))).mean(0)


# RFA's smoothed Weiszfeld algorithm, with the defaults of its authors' implementation (TensorFlow
# Federated's robust aggregation): 5 averaging passes (the mean, then 4 reweighted means), and no
# judge weighted by more than 1 / nu, so that a judge at the estimate itself does not divide by 0.
WEISZFELD_PASSES = 5
WEISZFELD_NU = 1e-6


def geometric_median(stacked: Tensor, _judged: Judgements) -> Tensor:
    """Each sample: the point with the least summed Euclidean distance to its judges' feedback (RFA:
    Pillutla, Kakade, Harchaoui, "Robust Aggregation for Federated Learning", IEEE TSP 2022),
    approximated from their mean by smoothed Weiszfeld steps, each the mean weighted by
    1 / max(nu, the judge's distance from the last estimate). Unlike the coordinate-wise median it
    is one point of the whole sample's gradient. The exact point moves boundedly with fewer than
    half the judges lying; these passes from the mean divide a far-off liar's pull by about the
    ratio of honest judges to liars each, which bounds lies up to a size only (docs/design.md)."""
    judges = stacked.flatten(2)  # judge x sample x value
    center = judges.mean(0)
    for _ in range(WEISZFELD_PASSES - 1):
        weights = 1 / (judges - center).norm(dim=2).clamp(min=WEISZFELD_NU)  # judge x sample
        center = (weights.unsqueeze(2) * judges).sum(0) / weights.sum(0).unsqueeze(1)
    return center.view(stacked.shape[1:])


# Keyed by the choices of mdgan.aggregate: tests/test_aggregation.py checks that each has its rule.
AGGREGATIONS: dict[Aggregate, Rule] = {
    Aggregate.mean: Rule(mean),
    Aggregate.class_aware: Rule(class_aware, class_sets=True, labels=True),
    Aggregate.forgiving: Rule(forgiving, verdicts=True, min_judges=2),
    # Three judges per sample at least, so that one liar is outvoted (trimmed_mean: 2 x mdgan.trim + 1).
    Aggregate.median: Rule(lambda judged: per_batch(judged, judged.medians), min_judges=3),
    Aggregate.trimmed_mean: Rule(robust(coordinate_trimmed_mean), min_judges=3),
    Aggregate.clipped: Rule(robust(norm_clipped_mean), min_judges=3),
    Aggregate.geometric_median: Rule(robust(geometric_median), min_judges=3),
}


def aggregate(rule: Aggregate, judged: Judgements) -> Tensor:
    """The upstream gradient [k, b, C, H, W] of the k generated batches under mdgan.aggregate=rule."""
    return AGGREGATIONS[rule].combine(judged)
