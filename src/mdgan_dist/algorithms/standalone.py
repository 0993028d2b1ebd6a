"""The standalone GAN baseline: one process, the whole train split, the same G, D, losses and steps."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from mdgan_dist.algorithms.ema import average_of
from mdgan_dist.algorithms.fault import diverge_if_scheduled
from mdgan_dist.algorithms.local import LocalGAN
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.algorithms.training import Report, Schedule
from mdgan_dist.resources import ComputeClock
from mdgan_dist.seeding import generator

log = logging.getLogger(__name__)

# fault.nan_worker names the one discriminator as MD-GAN's run with N = 1 does: worker rank 1.
DISCRIMINATOR_RANK = 1


class StandaloneGAN:
    """The whole run in the training loop (algorithms/loop.py), on the plan's single shard; its
    state is the local GAN's and G's moving average. It writes the same outputs as an MD-GAN run."""

    name = "standalone"
    role = "standalone"
    workers = None

    def __init__(self, ctx: RoleContext) -> None:
        cfg = ctx.cfg
        self.run_dir = ctx.run_dir
        # Stream names as MD-GAN's server (noise) and worker 0 (sampler, D): N = 1 runs compare exactly.
        noise = generator(cfg.train.seed, "noise")
        self.gan = LocalGAN(
            cfg,
            ctx.image_shape,
            ctx.num_classes,
            ctx.shard(0),
            0,
            noise,
            ctx.device,
            class_weights=ctx.plan.class_weights,
        )
        self.average = average_of(self.gan.generator, cfg.gan.ema_halflife)
        self.nan_at = ctx.faults.nans.get(DISCRIMINATOR_RANK)
        self.clock = ComputeClock()  # the GAN's iterations, scoring left out

    @property
    def generator(self) -> torch.nn.Module:
        return self.gan.generator

    def start(self, shard_sizes: list[int]) -> None:
        log.info("standalone GAN on %d samples, run directory %s", shard_sizes[0], self.run_dir)

    def step(self, iteration: int, _schedule: Schedule) -> Report:
        diverge_if_scheduled(self.nan_at, DISCRIMINATOR_RANK, iteration, self.gan.poison)
        with self.clock:
            d_loss, g_loss = self.gan.iteration(iteration)
        if self.average is not None:
            self.average.update(self.gan.generator, iteration + 1)
        return Report([d_loss], [g_loss])

    def conclude(self, done: int) -> None:
        """Nothing: the last iteration ends as any other."""

    def state_dict(self) -> dict[str, Any]:
        return {**self.gan.state_dict(), "average": None if self.average is None else self.average.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gan.load_state_dict(state)
        if self.average is not None:
            self.average.load_state_dict(state["average"])

    def stats(self) -> dict[str, float | int | None]:
        return {"compute_cpu_seconds": self.clock.seconds}

    def save_final(self, run_dir: Path) -> None:
        torch.save({"discriminator": self.gan.discriminator.state_dict()}, run_dir / "discriminator.pt")
