"""The paper's byte figures, from the config alone: what the bytes section measures against."""

from __future__ import annotations

import math

import torch

from mdgan_dist.algorithms.components import make_discriminator, make_generator
from mdgan_dist.algorithms.flgan.averaging import model_tensors
from mdgan_dist.algorithms.mdgan.message import STATISTIC_BYTES, WORKER_STATISTICS
from mdgan_dist.config import Config
from mdgan_dist.data import open_dataset
from mdgan_dist.distributed.protocol import HEADER_LEN

HEADER_BYTES = HEADER_LEN * 8  # every message starts with an int64 header
FLOAT32_BYTES = 4  # swaps and FL-GAN syncs always travel as float32 (flat_state.flatten)


def data_shape(cfg: Config) -> tuple[tuple[int, int, int], int]:
    dataset = open_dataset(cfg.data, "heldout")
    return dataset.image_shape, dataset.num_classes


def analytic_iteration_bytes(cfg: Config, workers: int) -> int:
    """The paper's Table III, 3*b*d*N values of the wire dtype per iteration at the server (X_d and
    X_g out, F_n back, to and from every worker), plus ACGAN's 2*b labels per worker in the same
    dtype, one 64-byte header per packet (2N headers), and each worker's statistics in float64."""
    shape, _ = data_shape(cfg)
    value = getattr(torch, cfg.comm.dtype).itemsize  # comm.dtype names a torch dtype
    b, d = cfg.train.batch_size, math.prod(shape)
    labels = 2 * b * value if cfg.model.conditional else 0
    statistics = len(WORKER_STATISTICS) * STATISTIC_BYTES
    return workers * (3 * b * d * value + labels + 2 * HEADER_BYTES + statistics)


def analytic_swap_bytes(cfg: Config) -> int:
    """What one worker sends per swap (swap.py: state_tensors): a DISCRIMINATOR header, then D's
    state_dict values and, with mdgan.swap_optimizer_state, per parameter Adam's step scalar and its
    two moments (|theta| values each), all as float32."""
    shape, classes = data_shape(cfg)
    discriminator = make_discriminator(cfg, shape, classes, 0)
    state = sum(tensor.numel() for tensor in discriminator.state_dict().values())
    parameters = list(discriminator.parameters())
    adam_values = len(parameters) + 2 * sum(p.numel() for p in parameters) if cfg.mdgan.swap_optimizer_state else 0
    return HEADER_BYTES + FLOAT32_BYTES * (state + adam_values)


def analytic_sync_bytes(cfg: Config, workers: int) -> int:
    """The FL-GAN server's bytes (sent + received) per averaging (flgan/server.py: synchronise):
    per worker one SYNC order header out; the worker's SYNC header + flat G and D in; the SYNC
    header + the average out. G and D travel as their floating-point state (averaging.py:
    model_tensors; integer buffers stay home) in float32."""
    shape, classes = data_shape(cfg)
    g, d = make_generator(cfg, shape, classes), make_discriminator(cfg, shape, classes, 0)
    floating = sum(tensor.numel() for tensor in model_tensors(g, d))
    order = HEADER_BYTES
    model_each_way = HEADER_BYTES + FLOAT32_BYTES * floating
    return workers * (order + 2 * model_each_way)
