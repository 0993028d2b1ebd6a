"""Image-quality scores of generated samples, computed offline.

The paper's "MNIST score" is the Inception Score formula with an MNIST classifier; here every
dataset gets such an evaluation classifier, trained once by `mdgan-eval train-classifier` and
cached. Scores against the held-out part: `classifier_score` and `frechet_distance` (FID's
formula in the classifier's penultimate features), plus Inception's IS and FID when local
Inception weights are given. The trainer calls `check_evaluation` and `Evaluator`.
"""

from mdgan_dist.metrics.evaluator import Evaluator, check_evaluation
from mdgan_dist.metrics.scores import classifier_score, feature_statistics, frechet_distance

__all__ = ["Evaluator", "check_evaluation", "classifier_score", "feature_statistics", "frechet_distance"]
