"""The standalone GAN baseline: one process, the whole train split, the same G, D, losses and steps."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from mdgan_dist.algorithms.ema import average_of, final_generator
from mdgan_dist.algorithms.local import LocalGAN
from mdgan_dist.algorithms.scoring import Scoring
from mdgan_dist.config import Config
from mdgan_dist.data import load_shard
from mdgan_dist.job import DataPlan
from mdgan_dist.resources import write_stats
from mdgan_dist.run_logging import RunLogger
from mdgan_dist.seeding import generator

log = logging.getLogger("mdgan_dist")


def run_standalone(cfg: Config, plan: DataPlan, device: torch.device, run_dir: Path) -> None:
    """Trains for train.iterations on the whole dataset (the plan's single shard) and writes the
    same outputs as an MD-GAN run: metrics.jsonl, tensorboard, samples, generator.pt."""
    (shard,) = plan.shards
    # Stream names as MD-GAN's server (noise) and worker 0 (sampler, D): N = 1 runs compare exactly.
    gan = LocalGAN(
        cfg,
        plan.image_shape,
        plan.num_classes,
        load_shard(plan.train, shard),
        0,
        generator(cfg.train.seed, "noise"),
        device,
    )
    average = average_of(gan.generator, cfg.gan.ema_halflife)
    scoring = Scoring(cfg, plan.num_classes, device)
    log.info(f"standalone GAN on {len(shard)} samples, run directory {run_dir}")
    iterations = cfg.train.iterations
    with RunLogger(run_dir, cfg.log.progress, 0, "standalone") as logger:
        for iteration in logger.progress(range(iterations), iterations):
            started = time.perf_counter()
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
    write_stats(run_dir, 0, "standalone", device)
    torch.save(final_generator(gan.generator, average, iterations), run_dir / "generator.pt")
    torch.save({"discriminator": gan.discriminator.state_dict()}, run_dir / "discriminator.pt")
