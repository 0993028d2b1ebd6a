"""Backend and device choice for every combination of request and visible GPUs (no GPU needed:
the GPU count is an argument)."""

from __future__ import annotations

import pytest
import torch

from mdgan_dist.distributed.env import LaunchEnv
from mdgan_dist.distributed.process_group import choose_backend, choose_device, wire_device
from mdgan_dist.errors import ConfigError

RANK2_OF_3 = LaunchEnv(rank=2, world_size=3, local_rank=2, local_world_size=3)


@pytest.mark.parametrize(
    "requested,gpus,expected",
    [("auto", 0, "gloo"), ("auto", 2, "gloo"), ("auto", 3, "nccl"), ("gloo", 8, "gloo"), ("nccl", 3, "nccl")],
)
def test_backend_auto_picks_nccl_only_with_one_gpu_per_rank(requested: str, gpus: int, expected: str) -> None:
    assert choose_backend(requested, RANK2_OF_3, gpus) == expected


def test_nccl_with_too_few_gpus_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match=r"3 ranks, 1 GPUs visible. Use comm.backend=gloo .* or start fewer workers"):
        choose_backend("nccl", RANK2_OF_3, 1)


@pytest.mark.parametrize(
    "requested,backend,gpus,device,wire",
    [
        ("auto", "gloo", 0, "cpu", "cpu"),
        ("auto", "gloo", 2, "cpu", "cpu"),
        ("cpu", "gloo", 2, "cpu", "cpu"),
        ("cuda", "gloo", 1, "cuda:0", "cpu"),  # every rank on the one GPU, staged over gloo
        ("cuda", "gloo", 2, "cuda:0", "cpu"),  # local rank 2 of 3 wraps around to GPU 0
        ("auto", "nccl", 3, "cuda:2", "cuda:2"),  # each rank its own GPU, end to end
        ("cuda", "nccl", 3, "cuda:2", "cuda:2"),
    ],
)
def test_device_and_wire(requested: str, backend: str, gpus: int, device: str, wire: str) -> None:
    chosen = choose_device(requested, backend, RANK2_OF_3, gpus)
    assert chosen == torch.device(device)
    assert wire_device(backend, chosen) == torch.device(wire)


def test_impossible_device_requests_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="no GPU is visible"):
        choose_device("cuda", "gloo", RANK2_OF_3, 0)
    with pytest.raises(ConfigError, match="NCCL moves GPU tensors only"):
        choose_device("cpu", "nccl", RANK2_OF_3, 3)
