"""The shared GAN math, in one process: the feedback protocol computes the true gradient."""

from __future__ import annotations

import pytest
import torch

from mdgan_dist.algorithms.aggregation import Judgements, aggregate
from mdgan_dist.algorithms.mdgan.schedule import derangement, feedback_batch, swap_period, training_batch
from mdgan_dist.algorithms.steps import (
    adam,
    discriminator_loss,
    discriminator_step,
    generate,
    generator_feedback,
    generator_loss,
    generator_step,
    r1_penalty,
    sample_latent,
    snapshot_parameters,
    verdict,
)
from mdgan_dist.config import GANConfig, MDGANConfig, ModelConfig, resolved_k
from mdgan_dist.models import build_discriminator, build_generator
from mdgan_dist.models.sampling import generator_input

SHAPE = (1, 28, 28)
CLASSES = 10


@pytest.mark.parametrize("conditioning", [None, "acgan", "projection"], ids=["plain", "acgan", "projection"])
@pytest.mark.parametrize("loss", ["non_saturating", "saturating"])
@pytest.mark.parametrize("num_workers,k", [(1, 1), (3, 1), (3, 2), (4, 4)])
def test_aggregated_feedback_is_the_gradient_of_the_mean_generator_loss(
    loss: str, num_workers: int, k: int, conditioning: str | None
) -> None:
    """Step 4 of the design: G's gradient from sum(F_n)/N equals autograd on mean_n J_gen(D_n(G(z))),
    conditional G and D judged on the labels the batches were generated for."""
    torch.manual_seed(0)
    conditional = conditioning is not None
    gan = GANConfig(loss=loss, conditioning=conditioning or "acgan")
    model = ModelConfig(width=0.0625, conditional=conditional)
    gen = build_generator(model, SHAPE, CLASSES)
    discs = [build_discriminator(model, SHAPE, CLASSES) for _ in range(num_workers)]
    noise, labels = sample_latent(
        torch.Generator().manual_seed(1), k * 8, model.z_dim, CLASSES if conditional else None
    )
    labels = None if labels is None else labels.view(k, 8)

    def labels_of(n: int) -> torch.Tensor | None:
        return None if labels is None else labels[feedback_batch(n, k)]

    generated = gen(generator_input(noise, None if labels is None else labels.flatten(), CLASSES)).view(k, 8, *SHAPE)
    feedbacks = [
        generator_feedback(discs[n], generated[feedback_batch(n, k)], gan, labels_of(n)).feedback
        for n in range(num_workers)
    ]
    upstream = aggregate("mean", Judgements(feedbacks, [feedback_batch(n, k) for n in range(num_workers)], k))
    via_feedback = torch.autograd.grad(generated, list(gen.parameters()), upstream)

    generated = gen(generator_input(noise, None if labels is None else labels.flatten(), CLASSES)).view(k, 8, *SHAPE)
    mean_loss = (
        sum(
            generator_loss(discs[n](generated[feedback_batch(n, k)]), loss, labels_of(n), gan.conditioning)
            for n in range(num_workers)
        )
        / num_workers
    )
    direct = torch.autograd.grad(mean_loss, list(gen.parameters()))

    for a, b in zip(via_feedback, direct):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in direct)


def test_losses_match_their_definitions() -> None:
    logits = torch.tensor([-2.0, 0.0, 3.0])
    prob = torch.sigmoid(logits)
    torch.testing.assert_close(generator_loss(logits, "non_saturating"), -torch.log(prob).mean())
    torch.testing.assert_close(generator_loss(logits, "saturating"), torch.log(1 - prob).mean())
    real, fake = torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.5])
    expected = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    torch.testing.assert_close(discriminator_loss(real, fake, 1.0), expected)
    smoothed = -(0.9 * torch.log(torch.sigmoid(real)) + 0.1 * torch.log(1 - torch.sigmoid(real))).mean()
    torch.testing.assert_close(
        discriminator_loss(real, fake, 0.9), smoothed - torch.log(1 - torch.sigmoid(fake)).mean()
    )


def test_acgan_losses_add_the_class_cross_entropy() -> None:
    """D's output [b, 1 + C]: column 0 is real/fake, the rest class logits scored against the labels."""
    real, fake = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]]), torch.tensor([[-1.0, 0.3, 0.1], [2.0, -2.0, 1.0]])
    real_classes, fake_classes = torch.tensor([0, 1]), torch.tensor([1, 1])
    ce = torch.nn.functional.cross_entropy
    torch.testing.assert_close(
        discriminator_loss(real, fake, 0.9, real_classes, fake_classes),
        discriminator_loss(real[:, 0], fake[:, 0], 0.9) + ce(real[:, 1:], real_classes) + ce(fake[:, 1:], fake_classes),
    )
    torch.testing.assert_close(
        generator_loss(fake, "non_saturating", fake_classes),
        generator_loss(fake[:, 0], "non_saturating") + ce(fake[:, 1:], fake_classes),
    )
    with pytest.raises(ValueError, match="no class outputs"):
        generator_loss(fake[:, 0], "non_saturating", fake_classes)


def test_projection_adds_the_logit_of_the_class_and_no_class_loss() -> None:
    """D's output [b, 1 + C] under projection: the real/fake logit of a sample of class c is
    column 0 plus column 1 + c; the plain losses then apply to it."""
    real, fake = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]]), torch.tensor([[-1.0, 0.3, 0.1], [2.0, -2.0, 1.0]])
    real_classes, fake_classes = torch.tensor([0, 1]), torch.tensor([1, 0])
    projected_real, projected_fake = torch.tensor([3.0, 3.5]), torch.tensor([-0.9, 0.0])
    torch.testing.assert_close(
        discriminator_loss(real, fake, 0.9, real_classes, fake_classes, "projection"),
        discriminator_loss(projected_real, projected_fake, 0.9),
    )
    torch.testing.assert_close(
        generator_loss(fake, "non_saturating", fake_classes, "projection"),
        generator_loss(projected_fake, "non_saturating"),
    )


def test_generator_input_appends_the_one_hot_label() -> None:
    noise = torch.randn(3, 4)
    assert generator_input(noise, None, CLASSES) is noise
    joined = generator_input(noise, torch.tensor([2, 0, 9]), CLASSES)
    assert joined.shape == (3, 4 + CLASSES)
    assert torch.equal(joined[:, :4], noise)
    assert joined[:, 4:].argmax(1).tolist() == [2, 0, 9] and joined[:, 4:].sum().item() == 3


def test_batch_assignment_follows_the_design() -> None:
    # k = 1: both batches are the same one, as in the paper.
    assert [(training_batch(n, 1), feedback_batch(n, 1)) for n in range(3)] == [(0, 0)] * 3
    # k = N: worker n gives feedback on X_n and trains against X_(n+1 mod k).
    assert [(training_batch(n, 4), feedback_batch(n, 4)) for n in range(4)] == [(1, 0), (2, 1), (3, 2), (0, 3)]


def test_default_k_is_ceil_log2_n() -> None:
    assert [resolved_k(MDGANConfig(), n) for n in (1, 2, 3, 4, 5, 10, 25, 50)] == [1, 1, 2, 2, 3, 4, 5, 6]
    assert resolved_k(MDGANConfig(k=3), 10) == 3


@pytest.mark.parametrize("num_workers", [2, 3, 5, 10])
def test_derangements_have_no_fixed_point_and_are_reproducible(num_workers: int) -> None:
    seen = set()
    for swap_index in range(30):
        targets = derangement(num_workers, seed=7, swap_index=swap_index)
        assert sorted(targets) == list(range(num_workers))
        assert all(target != worker for worker, target in enumerate(targets))
        assert targets == derangement(num_workers, seed=7, swap_index=swap_index)
        seen.add(tuple(targets))
    assert len(seen) > 1 or num_workers == 2


def test_swap_period_is_e_local_epochs() -> None:
    assert swap_period([1125] * 4, 64, 1.0) == 18  # ceil(1125 / 64)
    assert swap_period([1000, 1001], 10, 2.0) == 201  # ceil(1000.5 * 2 / 10)
    assert swap_period([1125] * 4, 64, 0) is None
    assert swap_period([4500], 64, 1.0) is None  # one worker: nothing to swap with


def test_a_stale_step_applies_the_gradient_of_the_parameters_that_generated_the_batch() -> None:
    """mdgan.overlap: batches made by G_t through a snapshot, G stepped to G_t+1 meanwhile; the
    next step must use the gradient at G_t and apply it to G_t+1."""
    torch.manual_seed(0)
    model = ModelConfig(name="mnist_mlp", width=0.125, conditional=False)
    gen = build_generator(model, SHAPE, CLASSES)
    optimizer = adam(gen, 2e-4, 0.5, 0.999)
    noise, upstream = torch.randn(8, model.z_dim), torch.randn(1, 8, *SHAPE)
    snapshot = snapshot_parameters(gen)
    stale = generate(gen, noise, None, CLASSES, snapshot).unsqueeze(0)
    # The reference gradient at G_t, on a copy.
    reference = build_generator(model, SHAPE, CLASSES)
    reference.load_state_dict(gen.state_dict())
    reference(noise).unsqueeze(0).backward(upstream)
    expected = [param.grad.clone() for param in reference.parameters()]
    # G moves on (the step of the iteration in flight) ...
    generator_step(optimizer, generate(gen, torch.randn(8, model.z_dim), None, CLASSES).unsqueeze(0), upstream)
    newer = [param.detach().clone() for param in gen.parameters()]
    # ... and the stale batch's step uses G_t's gradient on G_t+1's parameters.
    generator_step(optimizer, stale, upstream, snapshot)
    for param, grad, before in zip(gen.parameters(), expected, newer):
        torch.testing.assert_close(param.grad, grad)
        assert not torch.equal(param.detach(), before)
    # The snapshot itself was never updated.
    for (name, copy), original in zip(snapshot.items(), reference.parameters()):
        torch.testing.assert_close(copy.detach(), original.detach(), msg=name)


@pytest.mark.parametrize("conditioning", ["acgan", "projection"])
def test_r1_is_half_gamma_times_the_mean_squared_gradient_norm_and_enters_d_step(conditioning: str) -> None:
    """gan.r1: gamma / 2 x mean_x |d logit(x) / dx|^2 on the real images D saw, by finite differences
    along each sample's gradient; a D step with it moves D otherwise than without."""
    torch.manual_seed(0)
    gan = GANConfig(conditioning=conditioning, r1=10.0)
    disc = build_discriminator(ModelConfig(width=0.0625), SHAPE, CLASSES)
    images, classes = torch.rand(4, *SHAPE) * 2 - 1, torch.tensor([0, 3, 3, 9])
    seen = images.clone().requires_grad_(True)
    penalty = r1_penalty(verdict(disc(seen), classes, conditioning), seen, gan.r1)
    expected = 0.0
    for i in range(len(images)):
        x = images[i : i + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(verdict(disc(x), classes[i : i + 1], conditioning).sum(), x)
        step = 1e-3 * grad / grad.norm()  # the directional derivative along the gradient is its norm
        rise = verdict(disc(x + step), classes[i : i + 1], conditioning) - verdict(
            disc(x - step), classes[i : i + 1], conditioning
        )
        expected += (rise.item() / 2e-3) ** 2 / len(images)
    assert penalty.item() == pytest.approx(gan.r1 / 2 * expected, rel=1e-2)

    def stepped(cfg: GANConfig) -> list[torch.Tensor]:
        copy = build_discriminator(ModelConfig(width=0.0625), SHAPE, CLASSES)
        copy.load_state_dict(disc.state_dict())
        fake = (torch.rand(4, *SHAPE) * 2 - 1, classes)
        discriminator_step(copy, adam(copy, 1e-3, 0.5, 0.999), (images, classes), fake, cfg)
        return [p.detach().clone() for p in copy.parameters()]

    torch.manual_seed(1)
    with_r1 = stepped(gan)
    torch.manual_seed(1)
    without = stepped(GANConfig(conditioning=conditioning))
    assert any(not torch.allclose(a, b) for a, b in zip(with_r1, without, strict=True))
