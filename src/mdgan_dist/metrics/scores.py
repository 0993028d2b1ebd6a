"""The score formulas, as pure functions of class probabilities and feature statistics.

The classifier score is the Inception Score's formula with another classifier; the Frechet
distance is FID's formula with other features. Both are computed in float64.
"""

from __future__ import annotations

import torch


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
