"""Inception-v3 features for IS and FID, from torch-fidelity's port of the original TF graph.

Weights are only ever read from a local file (`eval.inception_weights`, e.g. torch-fidelity's
weights-inception-2015-12-05-6726825d.pth copied onto the machine); nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

# 'logits_unbiased' are the class logits IS is defined on, '2048' the pool features FID compares.
FEATURES = ["logits_unbiased", "2048"]
BATCH_SIZE = 50  # images are resized to 299 x 299 inside: keep a batch's activations small


class InceptionFeatures:
    def __init__(self, weights: Path, device: torch.device) -> None:
        self.device = device
        self.model = FeatureExtractorInceptionV3(
            "inception-v3-compat", FEATURES, feature_extractor_weights_path=str(weights)
        ).to(device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [n, C, H, W] in [-1, 1], C = 1 or 3 -> (logits [n, 1008], pool features [n, 2048]) on the CPU."""
        logits, pooled = [], []
        for chunk in images.split(BATCH_SIZE):
            # The extractor takes 8-bit RGB, as images are stored; grey images become three equal channels.
            pixels = ((chunk.to(self.device) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            chunk_logits, chunk_pooled = self.model(pixels.expand(-1, 3, -1, -1))
            logits.append(chunk_logits.cpu())
            pooled.append(chunk_pooled.cpu())
        return torch.cat(logits), torch.cat(pooled)
