"""The score formulas, as pure functions of images, class probabilities and feature statistics.

The classifier score is the Inception Score's formula with another classifier; the Frechet
distance is FID's formula with other features. Both are computed in float64. Salt and class
coverage say what those two summarise away: specks of noise, and classes the samples miss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CLASS_SHARE = "class_share/"  # the prefix of each class's share of the samples (class_coverage)


def classifier_score(probs: torch.Tensor) -> float:
    """exp(mean_x KL(p(y|x) || p(y))) over one split: probs [n, classes], rows summing to 1.

    Between 1 (every sample gets the same class distribution) and the number of classes (each
    sample confidently in one class, all classes equally often).
    """
    probs = probs.to(torch.float64)
    marginal = probs.mean(0, keepdim=True)
    # xlogy is 0 where p(y|x) is 0, so classes no sample falls in add nothing instead of nan.
    kl = (torch.special.xlogy(probs, probs) - torch.special.xlogy(probs, marginal)).sum(1)
    return float(kl.mean().exp())


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [d] and (unbiased) covariance [d, d] of features [n, d], n >= 2, in float64 on the CPU."""
    if len(features) < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {len(features)}")
    features = features.detach().to("cpu", torch.float64)
    return features.mean(0), torch.cov(features.T)


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2):

        |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr(sqrt(sqrt(cov1) cov2 sqrt(cov1)))

    The symmetric form of tr(sqrt(cov1 cov2)), so both square roots are of symmetric positive
    semi-definite matrices and come from eigendecompositions, with no complex round-off to drop.
    """
    mu1, cov1, mu2, cov2 = (t.to("cpu", torch.float64) for t in (mu1, cov1, mu2, cov2))
    root1 = _sqrt_psd(cov1)
    cross = _eigenvalues_psd(root1 @ cov2 @ root1).sqrt().sum()
    return float((mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross)


def _eigenvalues_psd(matrix: torch.Tensor) -> torch.Tensor:
    # Symmetrised against round-off; tiny negative eigenvalues of a PSD matrix are round-off too.
    return torch.linalg.eigvalsh((matrix + matrix.T) / 2).clamp(min=0)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def salt(images: torch.Tensor) -> float:
    """The fraction of pixels that are bright while none of their 8 neighbours is: isolated specks.

    images [n, C, H, W] in [-1, 1]; a pixel is bright above the midpoint of the range (0), taken
    on the mean over channels. Pixels beyond the border count as dark. A clean digit scores about
    0; specks on 5 % of an otherwise dark image score 0.05.
    """
    bright = (images.detach().float().mean(1, keepdim=True) > 0).float()
    ring = torch.ones(1, 1, 3, 3, device=bright.device)
    ring[0, 0, 1, 1] = 0
    bright_neighbours = F.conv2d(bright, ring, padding=1)
    return float((bright * (bright_neighbours == 0)).mean())


def class_coverage(probs: torch.Tensor) -> dict[str, float]:
    """How the samples spread over the classes, by the classifier's most likely class of each.

    probs [n, classes]. class_share_min: the share of the rarest class (1 / classes when
    balanced, 0 when a class is missing). class_entropy: the entropy of the shares in bits
    (log2(classes) when balanced, 0 when every sample falls in one class). class_share/<c>: the
    share of each class c, which says which class a generator misses or breaks.
    """
    counts = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).to(torch.float64)
    shares = counts / counts.sum()
    entropy = -float(torch.special.xlogy(shares, shares).sum()) / math.log(2)
    per_class = {f"{CLASS_SHARE}{c}": float(share) for c, share in enumerate(shares)}
    return {"class_share_min": float(shares.min()), "class_entropy": entropy + 0.0, **per_class}  # + 0.0: no -0.0
