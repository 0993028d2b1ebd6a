"""The GAN math every path shares: losses, a discriminator step, the error feedback, the G step.

MD-GAN's server and workers, and any single-process computation of the same round, call these
functions and nothing else, so the distributed result can be pinned to the single-process one.
Every forward pass of G and D goes through acceleration.forward: under train.precision=bf16 it is
autocast and its output cast back, so losses and feedback are always computed in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from mdgan_dist.algorithms.acceleration import forward
from mdgan_dist.config import Conditioning, GANConfig, GeneratorLoss, OptimConfig
from mdgan_dist.data import Sampler
from mdgan_dist.models.sampling import generator_input

# What D sees of a batch (gan.augment: augment.Augment); None: the batch as it is.
Augmentation = Callable[[torch.Tensor], torch.Tensor] | None
Batch = tuple[torch.Tensor, torch.Tensor | None]  # images and, for a conditional model, their classes
Loss = TypeVar("Loss")
Real = TypeVar("Real")  # a real batch: a Batch, or a private one (algorithms/mdgan/private.py)


def _seen(augment: Augmentation, images: torch.Tensor) -> torch.Tensor:
    return images if augment is None else augment(images)


def generate(
    generator: nn.Module,
    noise: torch.Tensor,
    labels: torch.Tensor | None,
    num_classes: int,
    parameters: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """G's samples for training, float32 whatever precision G runs in; with `parameters` (a
    snapshot_parameters copy) in place of G's own."""
    return forward(generator, generator_input(noise, labels, num_classes), parameters)


def sample_latent(
    stream: torch.Generator, count: int, z_dim: int, num_classes: int | None, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`count` noise vectors and, for a conditional model (num_classes given), class labels drawn
    uniformly, or in proportion to `weights` (data.clusters: each cluster's share of the images)."""
    noise = torch.randn(count, z_dim, generator=stream)
    if num_classes is None:
        return noise, None
    if weights is None:
        return noise, torch.randint(num_classes, (count,), generator=stream)
    return noise, torch.multinomial(weights, count, replacement=True, generator=stream)


def _judgement(
    output: torch.Tensor, classes: torch.Tensor | None, conditioning: Conditioning
) -> tuple[torch.Tensor, torch.Tensor | float]:
    """D's output on samples of the given classes as (real/fake logits [b], class loss).

    An unconditional D outputs the logits [b]. A conditional one outputs [b, 1 + C]: a logit,
    then one per class. acgan (Odena et al. 2017): the logit, and the cross-entropy of the class
    logits against the classes. projection (Miyato & Koyama 2018): the logit plus the logit of the
    sample's class, which is the projection discriminator's inner product of D's last features
    with a class embedding (the rows of D's last layer); no class loss."""
    if output.dim() == 1:
        if classes is not None:
            raise ValueError("class labels given, but the discriminator has no class outputs (model.conditional)")
        return output, 0.0
    logits, class_logits = output[:, 0], output[:, 1:]
    if classes is None:
        return logits, 0.0
    if conditioning == Conditioning.projection:
        return logits + class_logits.gather(1, classes[:, None]).squeeze(1), 0.0
    return logits, F.cross_entropy(class_logits, classes)  # acgan


def discriminator_loss(
    real_output: torch.Tensor,
    fake_output: torch.Tensor,
    real_label: float,
    real_classes: torch.Tensor | None = None,
    fake_classes: torch.Tensor | None = None,
    conditioning: Conditioning = Conditioning.acgan,
) -> torch.Tensor:
    """Binary cross-entropy: real samples labelled real_label (1, or 0.9 for one-sided label
    smoothing), generated ones 0. With classes, on the logits of `conditioning` (_judgement), and
    for acgan plus the class loss on both real and generated samples."""
    return real_loss(real_output, real_label, real_classes, conditioning) + fake_loss(
        fake_output, fake_classes, conditioning
    )


def real_loss(
    output: torch.Tensor, real_label: float, classes: torch.Tensor | None, conditioning: Conditioning
) -> torch.Tensor:
    """The real samples' half of discriminator_loss: the only half that reads a worker's records."""
    logits, class_loss = _judgement(output, classes, conditioning)
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, real_label)) + class_loss


def fake_loss(output: torch.Tensor, classes: torch.Tensor | None, conditioning: Conditioning) -> torch.Tensor:
    """The generated samples' half of discriminator_loss."""
    logits, class_loss = _judgement(output, classes, conditioning)
    return F.softplus(logits).mean() + class_loss


def verdict(output: torch.Tensor, classes: torch.Tensor | None, conditioning: Conditioning) -> torch.Tensor:
    """D's real/fake logit of each sample [b], the one G's loss is computed on (with projection,
    the sample's class term included): what the forgiving aggregation compares between judges."""
    return _judgement(output, classes, conditioning)[0]


def generator_loss(
    fake_output: torch.Tensor,
    kind: GeneratorLoss,
    fake_classes: torch.Tensor | None = None,
    conditioning: Conditioning = Conditioning.acgan,
) -> torch.Tensor:
    """non_saturating: -log D(G(z)); saturating: log(1 - D(G(z))), the paper's original form. With
    classes, on the logits of `conditioning`, and for acgan plus the class loss of the generated
    samples against the labels they were made for."""
    fake_logits, class_loss = _judgement(fake_output, fake_classes, conditioning)
    if kind == GeneratorLoss.non_saturating:
        adversarial = F.softplus(-fake_logits).mean()
    else:  # saturating
        adversarial = -F.softplus(fake_logits).mean()
    return adversarial + class_loss


def r1_penalty(logits: torch.Tensor, seen: torch.Tensor, gamma: float) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): gamma / 2 x the mean over the real samples of |d logit / d x|^2,
    x the image D saw (`seen`, which must require grad) and `logits` D's real/fake logits of them
    (steps.verdict). Leading dimensions (a stack's slots) stay: logits [b] -> a number, [W, b] -> [W]."""
    (gradient,) = torch.autograd.grad(logits.sum(), seen, create_graph=True)
    return gamma / 2 * gradient.square().flatten(logits.dim()).sum(-1).mean(-1)


def discriminator_step(
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: tuple[torch.Tensor, torch.Tensor | None],
    fake: tuple[torch.Tensor, torch.Tensor | None],
    cfg: GANConfig,
    augment: Augmentation = None,
) -> float:
    """One Adam step of D on (images, classes) pairs; classes are None when unconditional. D sees
    the real images, then the generated ones, through `augment`; with gan.r1, its loss has the R1
    penalty on the real images."""
    (real_images, real_classes), (fake_images, fake_classes) = real, fake
    optimizer.zero_grad(set_to_none=True)
    seen = _seen(augment, real_images).detach().requires_grad_(cfg.r1 > 0)
    real_output = forward(discriminator, seen)
    fake_output = forward(discriminator, _seen(augment, fake_images))
    loss = discriminator_loss(real_output, fake_output, cfg.real_label, real_classes, fake_classes, cfg.conditioning)
    if cfg.r1 > 0:
        loss = loss + r1_penalty(verdict(real_output, real_classes, cfg.conditioning), seen, cfg.r1)
    loss.backward()
    optimizer.step()
    return loss.item()


def discriminator_steps(
    step: Callable[[Real, Batch], Loss], next_real: Callable[[], Real], fake: Batch, cfg: GANConfig
) -> Loss:
    """L discriminator steps against one generated batch, on fresh real batches from next_real, or
    one reused for all L (gan.reuse_real_batch); returns what the last step returned."""
    real: Real | None = None
    for _ in range(cfg.disc_steps):
        if real is None or not cfg.reuse_real_batch:
            real = next_real()
        loss = step(real, fake)
    return loss


def train_discriminator(
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    sampler: Sampler,
    fake: Batch,
    cfg: GANConfig,
    augment: Augmentation = None,
) -> float:
    """discriminator_steps of one D; returns the loss of the last step. Real labels are used only
    by a conditional model."""
    conditional = fake[1] is not None

    def next_real() -> Batch:
        images, classes = sampler.next_batch()
        return images, classes if conditional else None

    def step(real: Batch, fake: Batch) -> float:
        return discriminator_step(discriminator, optimizer, real, fake, cfg, augment)

    return discriminator_steps(step, next_real, fake, cfg)


class Judged(NamedTuple):
    """A worker's answer on the samples it judged."""

    feedback: torch.Tensor  # F_n [b, C, H, W], float32 like the samples; contiguous, it is sent as is
    loss: float  # G's loss under this D
    verdicts: torch.Tensor  # D's real/fake logit of each sample [b] (steps.verdict)


def generator_feedback(
    discriminator: nn.Module,
    samples: torch.Tensor,
    cfg: GANConfig,
    classes: torch.Tensor | None = None,
    augment: Augmentation = None,
) -> Judged:
    """F_n = d J_gen(D_n(X)) / d X: what a worker tells the server about the samples it got. With
    `augment`, D judges the augmented samples and the gradient flows back through the augmentation."""
    samples = samples.detach().requires_grad_(True)
    output = forward(discriminator, _seen(augment, samples))
    loss = generator_loss(output, cfg.loss, classes, cfg.conditioning)
    (feedback,) = torch.autograd.grad(loss, samples)
    return Judged(feedback.contiguous(), loss.item(), verdict(output.detach(), classes, cfg.conditioning))


def generator_step(
    optimizer: torch.optim.Optimizer,
    generated: torch.Tensor,
    upstream: torch.Tensor,
    snapshot: dict[str, torch.Tensor] | None = None,
    check: Callable[[list[torch.Tensor]], None] | None = None,
) -> None:
    """One backward pass through G from the generated batches (k x b x C x H x W), then Adam.

    snapshot: the copy of G's parameters that generated the batches (mdgan.overlap); their
    gradient is applied to G's current parameters, one step newer. check: called with the
    gradients before the step (the non-finite guard), to raise rather than step.
    """
    optimizer.zero_grad(set_to_none=True)
    generated.backward(upstream)
    params = optimizer.param_groups[0]["params"]
    if snapshot is not None:
        for param, stale in zip(params, snapshot.values(), strict=True):
            param.grad = stale.grad
    if check is not None:
        check([param.grad for param in params if param.grad is not None])
    optimizer.step()


def snapshot_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's parameters, in parameters() order, that autograd can differentiate."""
    return {name: param.detach().clone().requires_grad_(True) for name, param in module.named_parameters()}


class Trainable(Protocol):
    """A module, or anything else with parameters to optimise (mdgan/stack.py's stacked D)."""

    def parameters(self) -> Iterator[torch.Tensor]: ...


def adam(module: Trainable, lr: float, beta1: float, beta2: float, eps: float = 1e-8) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(beta1, beta2), eps=eps)


def generator_adam(generator: nn.Module, cfg: OptimConfig) -> torch.optim.Adam:
    return adam(generator, cfg.g_lr, cfg.beta1, cfg.beta2, cfg.g_eps)


def discriminator_adam(discriminator: Trainable, cfg: OptimConfig) -> torch.optim.Adam:
    return adam(discriminator, cfg.d_lr, cfg.beta1, cfg.beta2, cfg.d_eps)
