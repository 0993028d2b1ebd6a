"""The oracle: a distributed MD-GAN run equals the single-process computation of the same rounds.

The reference below rebuilds every rank's models, noise and real batches from the same seeds and
calls the same step functions, but moves no message: batches, feedback and discriminators pass
between plain Python objects. Any error in the protocol, the batch assignment, the aggregation or
the swap makes the parameters differ.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from conftest import ITERATIONS, load_config
from mdgan_dist.algorithms.components import label_classes, make_discriminator, make_generator, make_sampler
from mdgan_dist.algorithms.mdgan.schedule import derangement, feedback_batch, swap_period, training_batch
from mdgan_dist.algorithms.steps import (
    adam,
    aggregate_feedback,
    discriminator_step,
    generator_feedback,
    generator_input,
    generator_step,
    sample_latent,
)
from mdgan_dist.config import Config, resolved_k
from mdgan_dist.data import load_shard
from mdgan_dist.job import plan_data
from mdgan_dist.seeding import generator


def reference_run(cfg: Config, num_workers: int, iterations: int) -> tuple[dict, list[dict], int]:
    """Single-process MD-GAN: returns G's state, every worker's final D state and the swap count."""
    plan = plan_data(cfg, num_workers)
    shape, batch, k = plan.image_shape, cfg.train.batch_size, resolved_k(cfg.mdgan, num_workers)
    classes = plan.num_classes
    conditional = cfg.model.conditional
    gen = make_generator(cfg, shape, classes)
    gen_opt = adam(gen, cfg.optim.g_lr, cfg.optim.beta1, cfg.optim.beta2)
    discs = [make_discriminator(cfg, shape, classes, n) for n in range(num_workers)]
    disc_opts = [adam(d, cfg.optim.d_lr, cfg.optim.beta1, cfg.optim.beta2) for d in discs]
    samplers = [make_sampler(cfg, *load_shard(plan.train, plan.shards[n]), n) for n in range(num_workers)]
    noise = generator(cfg.train.seed, "noise")
    period = swap_period(plan.shard_sizes, batch, cfg.mdgan.swap_every_epochs)
    swaps = 0
    for iteration in range(iterations):
        z, labels = sample_latent(noise, k * batch, cfg.model.z_dim, label_classes(cfg, classes))
        generated = gen(generator_input(z, labels, classes)).view(k, batch, *shape)
        labels = None if labels is None else labels.view(k, batch)

        def labels_of(index: int) -> torch.Tensor | None:
            return None if labels is None else labels[index]

        feedbacks = []
        for n in range(num_workers):
            real = None
            for _ in range(cfg.gan.disc_steps):
                if real is None or not cfg.gan.reuse_real_batch:
                    images, real_classes = samplers[n].next_batch()
                    real = (images, real_classes if conditional else None)
                fake = (generated[training_batch(n, k)].detach(), labels_of(training_batch(n, k)))
                discriminator_step(discs[n], disc_opts[n], real, fake, cfg.gan.real_label)
            fb = feedback_batch(n, k)
            feedbacks.append(generator_feedback(discs[n], generated[fb], cfg.gan.loss, labels_of(fb))[0])
        generator_step(
            gen_opt, generated, aggregate_feedback(feedbacks, [feedback_batch(n, k) for n in range(num_workers)], k)
        )
        if period and (iteration + 1) % period == 0:
            targets = derangement(num_workers, cfg.train.seed, swaps)
            states = [copy.deepcopy(d.state_dict()) for d in discs]
            opt_states = [copy.deepcopy(o.state_dict()) for o in disc_opts]
            for n, target in enumerate(targets):
                discs[target].load_state_dict(states[n])
                if cfg.mdgan.swap_optimizer_state:
                    disc_opts[target].load_state_dict(opt_states[n])
            swaps += 1
    return gen.state_dict(), [d.state_dict() for d in discs], swaps


def test_distributed_round_equals_single_process(finished_run: tuple[Path, int]) -> None:
    run_dir, num_workers = finished_run
    cfg = load_config(run_dir)
    expected_g, expected_ds, expected_swaps = reference_run(cfg, num_workers, ITERATIONS)
    actual_g = torch.load(run_dir / "generator.pt")["generator"]
    for name, value in expected_g.items():
        torch.testing.assert_close(actual_g[name], value, rtol=1e-5, atol=1e-6, msg=f"generator {name}")
    for n in range(num_workers):
        actual_d = torch.load(run_dir / f"discriminator_rank{n + 1}.pt")["discriminator"]
        for name, value in expected_ds[n].items():
            torch.testing.assert_close(actual_d[name], value, rtol=1e-5, atol=1e-6, msg=f"worker {n} {name}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert [r["iteration"] for r in records] == list(range(1, ITERATIONS + 1))
    assert records[-1]["swaps"] == expected_swaps
    # The parameters must have moved, or the comparison above proves nothing.
    initial = make_generator(cfg, (1, 28, 28), 10).state_dict()
    assert any(not torch.equal(initial[name], actual_g[name]) for name in initial)


def test_server_bytes_per_iteration_match_the_paper(finished_run: tuple[Path, int]) -> None:
    """3*b*d*N float32 values per iteration (plus the 2*b*N labels of the generated batches for
    ACGAN), plus one 64-byte header per message; a swap order adds one header per worker."""
    run_dir, num_workers = finished_run
    cfg = load_config(run_dir)
    b, d, value, header = cfg.train.batch_size, 28 * 28, 4, 8 * 8
    labels = 2 * b * value if cfg.model.conditional else 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    swaps_before = 0
    for record in records:
        swap_orders = num_workers * header * (record["swaps"] - swaps_before)
        swaps_before = record["swaps"]
        assert record["server_bytes_sent"] == num_workers * (2 * b * d * value + labels + header) + swap_orders
        assert record["server_bytes_recv"] == num_workers * (b * d * value + header)
        payload = record["server_bytes_sent"] + record["server_bytes_recv"] - swap_orders - 2 * num_workers * header
        assert payload == 3 * b * d * num_workers * value + num_workers * labels
