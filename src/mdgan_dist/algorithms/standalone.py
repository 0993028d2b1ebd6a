"""The standalone GAN baseline: one process, the whole train split, the same G, D, losses and steps."""

from __future__ import annotations

import logging
import time

import torch

from mdgan_dist.algorithms.ema import average_of, final_generator
from mdgan_dist.algorithms.local import LocalGAN
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.algorithms.scoring import Scoring
from mdgan_dist.resources import ComputeClock, write_stats
from mdgan_dist.run_logging import RunLogger
from mdgan_dist.seeding import generator

log = logging.getLogger(__name__)


class StandaloneGAN:
    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx

    def run(self) -> None:
        """Trains for train.iterations on the whole dataset (the plan's single shard) and writes
        the same outputs as an MD-GAN run: metrics.jsonl, tensorboard, samples, generator.pt."""
        ctx = self.ctx
        cfg, device, run_dir = ctx.cfg, ctx.device, ctx.run_dir
        shard = ctx.shard(0)
        # Stream names as MD-GAN's server (noise) and worker 0 (sampler, D): N = 1 runs compare exactly.
        noise = generator(cfg.train.seed, "noise")
        gan = LocalGAN(cfg, ctx.image_shape, ctx.num_classes, shard, 0, noise, device)
        average = average_of(gan.generator, cfg.gan.ema_halflife)
        scoring = Scoring(cfg, ctx.num_classes, device)
        log.info("standalone GAN on %d samples, run directory %s", len(shard[0]), run_dir)
        iterations, clock = cfg.train.iterations, ComputeClock()  # the GAN's iterations, scoring left out
        with RunLogger(run_dir, cfg.log.progress, 0, "standalone") as logger:
            for iteration in logger.progress(range(iterations), iterations):
                started = time.perf_counter()
                with clock:
                    d_loss, g_loss = gan.iteration()
                done, last = iteration + 1, iteration + 1 == iterations
                if average is not None:
                    average.update(gan.generator, done)
                if done % cfg.log.every == 0 or last:
                    logger.scalars(
                        done, d_loss_per_worker=[d_loss], g_loss=g_loss, d_loss=d_loss,
                        iteration_seconds=time.perf_counter() - started,
                    )  # fmt: skip
                scoring.after(done, last, gan.generator, average, logger)
        write_stats(run_dir, 0, "standalone", device, compute_cpu_seconds=clock.seconds)
        torch.save(final_generator(gan.generator, average, iterations), run_dir / "generator.pt")
        torch.save({"discriminator": gan.discriminator.state_dict()}, run_dir / "discriminator.pt")
