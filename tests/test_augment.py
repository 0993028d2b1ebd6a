"""The augmentations a discriminator sees images through (gan.augment), on hand-made images."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mdgan_dist.algorithms.steps import generator_feedback
from mdgan_dist.augment import Augment, parse_policy, random_cutout, random_shifts
from mdgan_dist.config import GANConfig, ModelConfig
from mdgan_dist.models import build_discriminator


def numbered(count: int, side: int = 8) -> torch.Tensor:
    """Images whose pixels are all different and above the background: where each went shows."""
    return torch.arange(count * side * side, dtype=torch.float32).view(count, 1, side, side) / (count * side * side)


def test_shifts_move_each_image_by_its_own_offset_and_fill_with_background() -> None:
    images = numbered(16)
    shifted = random_shifts(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape
    offsets = set()
    for image, moved in zip(images[:, 0], shifted[:, 0]):
        # Find the offset that maps the image onto its moved self, background outside.
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(moved, F.pad(image, (2, 2, 2, 2), value=-1.0)[2 + dy : 10 + dy, 2 + dx : 10 + dx])
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 4  # the offsets are drawn per image
    assert torch.equal(shifted, random_shifts(images, 2, torch.Generator().manual_seed(0)))


def test_cutout_sets_one_square_per_image_to_background() -> None:
    images = numbered(32, side=12)
    cut = random_cutout(images, 4, torch.Generator().manual_seed(1))
    changed = cut != images
    assert torch.all(cut[changed] == -1.0)
    for mask in changed[:, 0]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        # One square of side 4, cut where it crosses the border.
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
        assert mask.sum() == len(rows) * len(cols)
        assert rows.tolist() == list(range(rows[0], rows[0] + len(rows)))
        assert cols.tolist() == list(range(cols[0], cols[0] + len(cols)))
    assert len({tuple(mask.nonzero()[0].tolist()) for mask in changed[:, 0]}) > 8  # centres per image


def test_gradients_flow_through_the_kept_pixels_only() -> None:
    images = numbered(4).requires_grad_(True)
    augment = Augment(("translation", "cutout"), seed=3)
    augmented = augment(images)
    augmented.sum().backward()
    kept = augmented.detach() != -1.0
    # Every kept pixel came from one input pixel: the gradient counts how many each input gave.
    assert images.grad.sum() == kept.sum()
    assert set(images.grad.unique().tolist()) <= {0.0, 1.0}


def test_policy_names_and_state() -> None:
    assert parse_policy("translation,cutout") == ("translation", "cutout")
    assert parse_policy(" cutout ") == ("cutout",)
    assert parse_policy("none") == parse_policy("") == ()
    with pytest.raises(ValueError, match="unknown augmentation colour"):
        parse_policy("translation,colour")
    augment = Augment(("translation", "cutout"), seed=5)
    augment(numbered(3))
    state = augment.state_dict()
    first = augment(numbered(3))
    restored = Augment(("translation", "cutout"), seed=99)
    restored.load_state_dict(state)
    assert torch.equal(restored(numbered(3)), first)


def test_feedback_is_the_gradient_through_the_augmentation() -> None:
    """F = d J(D(T(x))) / dx: replayed by hand with the same draws of T."""
    torch.manual_seed(0)
    discriminator = build_discriminator(ModelConfig(name="dcgan", width=0.25, conditional=False), (1, 28, 28), 10)
    samples = torch.rand(6, 1, 28, 28) * 2 - 1
    feedback, loss, _ = generator_feedback(discriminator, samples, GANConfig(), augment=Augment(("translation",), 7))
    x = samples.clone().requires_grad_(True)
    augmented = Augment(("translation",), 7)(x)
    by_hand = F.softplus(-discriminator(augmented)).mean()
    (expected,) = torch.autograd.grad(by_hand, x)
    torch.testing.assert_close(feedback, expected)
    assert loss == pytest.approx(by_hand.item())
    plain = generator_feedback(discriminator, samples, GANConfig()).feedback
    assert not torch.allclose(plain, feedback)
