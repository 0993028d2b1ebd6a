"""One iteration of each role's compute, in this process, for the compute section: built from the
components and steps the trainer uses, called as the roles call them."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mdgan_dist.algorithms.components import (
    label_classes,
    make_augment,
    make_discriminator,
    make_generator,
    make_sampler,
)
from mdgan_dist.algorithms.local import LocalGAN
from mdgan_dist.algorithms.mdgan.schedule import feedback_batch
from mdgan_dist.algorithms.steps import (
    aggregate_feedback,
    discriminator_adam,
    generate,
    generator_adam,
    generator_feedback,
    generator_step,
    sample_latent,
    train_discriminator,
)
from mdgan_dist.config import Config, resolved_k
from mdgan_dist.data import load_shard
from mdgan_dist.job import plan_data
from mdgan_dist.seeding import generator as noise_stream


def compute_steps(cfg: Config, workers: list[int], device: torch.device) -> dict[str, Callable[[], None]]:
    """One iteration of each role, built from the components and steps the trainer uses."""
    plan = plan_data(cfg, 1)  # one shard, the whole train split: the shard size costs no compute
    shape, classes, batch = plan.image_shape, plan.num_classes, cfg.train.batch_size
    shard = load_shard(plan.train, plan.shards[0])
    conditional = label_classes(cfg, classes)
    noise = noise_stream(cfg.train.seed, "noise")

    # MD-GAN worker: L D-steps on X_d, then the feedback on X_g, as worker.py calls them. The
    # batches are the generator's, made once (the worker receives them, it does not make them).
    discriminator = make_discriminator(cfg, shape, classes, 0).to(device)
    d_optimizer = discriminator_adam(discriminator, cfg.optim)
    sampler = make_sampler(cfg, shard[0].to(device), shard[1].to(device), 0)
    augment = make_augment(cfg, 0)
    g = make_generator(cfg, shape, classes).to(device)
    with torch.no_grad():
        z, labels = sample_latent(noise, 2 * batch, cfg.model.z_dim, conditional)
        labels = None if labels is None else labels.to(device).view(2, batch)
        received = generate(g, z.to(device), None if labels is None else labels.view(-1), classes)
    received = received.view(2, batch, *shape)

    def label(row: int) -> torch.Tensor | None:
        return None if labels is None else labels[row]

    def mdgan_worker() -> None:
        train_discriminator(discriminator, d_optimizer, sampler, (received[0], label(0)), cfg.gan, augment)
        generator_feedback(discriminator, received[1], cfg.gan, label(1), augment)

    # FL-GAN worker (and the standalone GAN): a whole GAN's iteration.
    local = LocalGAN(cfg, shape, classes, shard, 0, noise_stream(cfg.train.seed, "noise", 0), device)

    def flgan_worker() -> None:
        local.iteration()

    steps = {"mdgan_worker": mdgan_worker, "flgan_worker": flgan_worker}
    for n in sorted({resolved_k(cfg.mdgan, n) for n in workers}):
        steps[f"mdgan_server_k{n}"] = server_step(cfg, shape, classes, n, device)
    return steps


def server_step(cfg: Config, shape: tuple[int, int, int], classes: int, k: int, device: torch.device) -> Callable:
    """The MD-GAN server's compute of one iteration with k batches: generate, aggregate, G step.
    The feedback is a fixed tensor per batch (what arrives does not change the cost)."""
    g = make_generator(cfg, shape, classes).to(device)
    optimizer = generator_adam(g, cfg.optim)
    noise, batch = noise_stream(cfg.train.seed, "noise"), cfg.train.batch_size
    feedbacks = [torch.randn(batch, *shape, device=device) * 1e-3 for _ in range(k)]
    assignment = [feedback_batch(n, k) for n in range(k)]

    def step() -> None:
        z, labels = sample_latent(noise, k * batch, cfg.model.z_dim, label_classes(cfg, classes))
        labels = None if labels is None else labels.to(device)
        generated = generate(g, z.to(device), labels, classes).view(k, batch, *shape)
        generator_step(optimizer, generated, aggregate_feedback(feedbacks, assignment, k))

    return step
