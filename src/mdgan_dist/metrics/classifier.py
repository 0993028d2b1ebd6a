"""The evaluation classifier: a small CNN whose class probabilities give the classifier score and
whose penultimate layer gives the features of the Frechet distance (the paper's "MNIST score")."""

from __future__ import annotations

import torch
from torch import nn

# Bump when the architecture or its training changes: cached classifiers of another version are
# not used (the version is part of their cache key).
CLASSIFIER_VERSION = 1
FEATURE_DIM = 128


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class EvalClassifier(nn.Module):
    """Images [b, C, H, W] in [-1, 1] -> class logits [b, num_classes]; any H, W >= 8."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.image_shape = image_shape
        self.num_classes = num_classes
        self.body = nn.Sequential(
            _block(image_shape[0], 32),
            _block(32, 64),
            _block(64, 128),
            # A fixed 2 x 2 grid, so one architecture serves 28 x 28, 32 x 32 and larger images.
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(128 * 4, FEATURE_DIM),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The penultimate layer, [b, FEATURE_DIM]: what the Frechet distance compares."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(images)))
