"""A worker process's stacked discriminators (mdgan.workers_per_rank > 1) against the same
workers computed one by one with the plain step functions, on the same seeds: a few iterations
of D steps and feedback, with the R1 penalty's double backward through vmap."""

from __future__ import annotations

import pytest
import torch

from mdgan_dist.algorithms.components import make_augment, make_discriminator, make_sampler
from mdgan_dist.algorithms.mdgan.discriminators import DiscriminatorCompute
from mdgan_dist.algorithms.mdgan.message import FEEDBACK, TRAINING
from mdgan_dist.algorithms.steps import discriminator_adam, generator_feedback, train_discriminator
from mdgan_dist.compose import compose
from mdgan_dist.data import load_shard
from mdgan_dist.job import plan_data
from mdgan_dist.resources import one_intra_op_thread
from multiproc import TINY

WORKERS = 3
ITERATIONS = 3


@pytest.mark.parametrize(
    "overrides",
    [
        ["gan.r1=10", "gan.augment=translation"],
        ["gan.r1=1", "gan.conditioning=acgan", "gan.disc_steps=2"],
        ["gan.r1=10", "model.conditional=false"],
    ],
    ids=["r1-projection-augment", "r1-acgan-L2", "r1-unconditional"],
)
def test_stacked_discriminators_step_as_each_one_alone(overrides: list[str]) -> None:
    cfg = compose([*TINY, "data.split=classes", "data.classes_per_worker=4", *overrides])
    plan = plan_data(cfg, WORKERS)
    shape, classes = plan.image_shape, plan.num_classes
    shards = [load_shard(plan.train, plan.shards[n]) for n in range(WORKERS)]
    conditional = cfg.model.conditional
    with one_intra_op_thread():
        stacked = DiscriminatorCompute(cfg, shape, classes, shards, list(range(WORKERS)), torch.device("cpu"))
        alone = [make_discriminator(cfg, shape, classes, n) for n in range(WORKERS)]
        optimizers = [discriminator_adam(d, cfg.optim) for d in alone]
        samplers = [make_sampler(cfg, *shards[n], n) for n in range(WORKERS)]
        augments = [make_augment(cfg, n) for n in range(WORKERS)]
        generated = torch.Generator().manual_seed(5)
        batch = cfg.train.batch_size
        for _ in range(ITERATIONS):
            samples = torch.rand(WORKERS, 2, batch, *shape, generator=generated) * 2 - 1
            labels = torch.randint(classes, (WORKERS, 2, batch), generator=generated) if conditional else None
            outcome = stacked.iteration(samples, labels, 0)
            for n in range(WORKERS):

                def of(row: int) -> torch.Tensor | None:
                    return None if labels is None else labels[n, row]  # noqa: B023 -- called at once

                fake = (samples[n, TRAINING], of(TRAINING))
                train_discriminator(alone[n], optimizers[n], samplers[n], fake, cfg.gan, augments[n])
                judged = generator_feedback(alone[n], samples[n, FEEDBACK], cfg.gan, of(FEEDBACK), augments[n])
                torch.testing.assert_close(outcome.feedback[n], judged.feedback, rtol=1e-4, atol=1e-7)
        for n in range(WORKERS):
            for name, value in alone[n].state_dict().items():
                torch.testing.assert_close(
                    stacked.stack.slot_state(n)[name], value, rtol=1e-4, atol=1e-6, msg=f"worker {n} {name}"
                )
