"""The oracle: a distributed MD-GAN run equals the single-process computation of the same rounds
(reference.py). Any error in the protocol, the batch assignment, the aggregation, the swap or the
staleness makes the parameters differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from conftest import ITERATIONS, load_config
from mdgan_dist.algorithms.aggregation import AGGREGATIONS
from mdgan_dist.algorithms.components import make_generator
from mdgan_dist.algorithms.mdgan.message import wire_dtype
from mdgan_dist.config import PrivacyConfig
from reference import assert_same_discriminators, assert_same_generators, reference_run


def test_distributed_round_equals_single_process(finished_run: tuple[Path, int]) -> None:
    run_dir, num_workers = finished_run
    cfg = load_config(run_dir)
    expected_g, expected_ds, expected_swaps, expected_d_losses = reference_run(cfg, num_workers, ITERATIONS)
    assert_same_generators(run_dir, expected_g)
    assert_same_discriminators(run_dir, expected_ds)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert [r["iteration"] for r in records] == list(range(1, ITERATIONS + 1))
    assert records[-1]["swaps"] == expected_swaps
    # Each worker's own D loss, also with several workers per process (mdgan.workers_per_rank).
    torch.testing.assert_close([r["d_loss_per_worker"] for r in records], expected_d_losses, rtol=1e-5, atol=1e-6)
    # The parameters must have moved, and the average must differ from the raw G, or the
    # comparisons above prove nothing.
    initial = make_generator(cfg, (1, 28, 28), cfg.data.clusters or 10).state_dict()
    actual = torch.load(run_dir / "generator.pt")
    raw = actual.get("raw_generator", actual["generator"])
    assert any(not torch.equal(initial[name], raw[name]) for name in initial)
    if cfg.gan.ema_halflife:
        assert any(not torch.equal(actual["generator"][name], raw[name]) for name in initial)
    if cfg.fault.byzantine_worker:  # the lies changed G's steps: the honest reference differs
        cfg.fault.byzantine_worker = None
        honest = reference_run(cfg, num_workers, ITERATIONS)[0].get("raw_generator")
        assert honest is not None and any(not torch.allclose(honest[name], raw[name]) for name in raw)
    if cfg.privacy.epsilon is not None:  # the noise changed D's steps: the reference without it differs
        cfg.privacy = PrivacyConfig()
        plain_run = reference_run(cfg, num_workers, ITERATIONS)[0]
        plain = plain_run.get("raw_generator", plain_run["generator"])
        assert any(not torch.allclose(plain[name], raw[name]) for name in raw)
    if cfg.mdgan.aggregate != "mean":  # the rule changed G's steps: the mean's reference differs
        cfg.mdgan.aggregate = "mean"
        under_mean = reference_run(cfg, num_workers, ITERATIONS)[0].get("raw_generator")
        assert under_mean is not None and any(not torch.allclose(under_mean[name], raw[name]) for name in raw)


def test_server_bytes_per_iteration_match_the_paper(finished_run: tuple[Path, int]) -> None:
    """3*b*d*N float32 values per iteration (plus the 2*b*N labels of the generated batches for
    ACGAN), in one packet per worker process and direction, each with its 64-byte header, the
    feedback with each worker's statistics (two float64 losses); a swap
    order adds one header per worker, and the TRAIN after it (or after the handshake) one bare
    header more per process."""
    run_dir, num_workers = finished_run
    cfg = load_config(run_dir)
    processes = num_workers // cfg.mdgan.workers_per_rank
    value = torch.empty((), dtype=wire_dtype(cfg.comm.dtype)).element_size()
    b, d, header, statistics = cfg.train.batch_size, 28 * 28, 8 * 8, 2 * 8
    labels = 2 * b * value if cfg.model.conditional else 0
    verdicts = b * value if AGGREGATIONS[cfg.mdgan.aggregate].verdicts else 0  # D's logit of each sample judged
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    swaps_before, control_before = 0, True
    for record in records:
        swapped = record["swaps"] > swaps_before
        swap_orders = num_workers * header * (record["swaps"] - swaps_before)
        announcements = processes * header * control_before
        swaps_before, control_before = record["swaps"], swapped
        expected_sent = num_workers * (2 * b * d * value + labels) + processes * header + swap_orders + announcements
        assert record["server_bytes_sent"] == expected_sent
        assert record["server_bytes_recv"] == num_workers * (b * d * value + verdicts + statistics) + processes * header
        overhead = swap_orders + announcements + 2 * processes * header + num_workers * statistics
        payload = record["server_bytes_sent"] + record["server_bytes_recv"] - overhead
        assert payload == 3 * b * d * num_workers * value + num_workers * (labels + verdicts)
        # One packet per worker process and direction, plus the bare headers above.
        assert record["server_messages_recv"] == processes
        assert record["server_messages_sent"] == processes + (swap_orders + announcements) // header
