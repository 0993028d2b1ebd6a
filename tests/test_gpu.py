"""The GPU paths, for `pytest -m gpu` on a machine with CUDA; every test skips, saying why, where
there is none. The default models compute on the GPU what they compute on the CPU, bf16 autocast
runs there and keeps its outputs float32, and real jobs of the trainer train on the GPU over gloo
and over NCCL (launch/gpu_check.sh runs longer jobs of the same kinds)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from mdgan_dist.algorithms.acceleration import forward
from mdgan_dist.algorithms.components import make_discriminator, make_generator
from mdgan_dist.algorithms.steps import discriminator_loss, generate, generator_loss, sample_latent
from mdgan_dist.compose import compose
from mdgan_dist.config import Config, ModelConfig
from multiproc import TINY, metrics, run_job

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: torch.cuda.is_available() is false"),
]

SHAPE = (1, 28, 28)
CLASSES = 10
BATCH = 16
CUDA = torch.device("cuda")
Z_DIM = ModelConfig().z_dim  # the default model's


@pytest.fixture
def no_tf32() -> Iterator[None]:
    """Plain float32 on the GPU: cuDNN uses TF32 for float32 convolutions by default, and its
    10-bit mantissa, not the code, would then set the tolerance."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def models(cfg: Config) -> tuple[nn.Module, nn.Module]:
    """G and the first worker's D, seeded as the trainer seeds them."""
    return make_generator(cfg, SHAPE, CLASSES), make_discriminator(cfg, SHAPE, CLASSES, 0)


def one_round(gen: nn.Module, disc: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    """On `device`, from fixed seeds: G's batch, D's loss on it and on a real batch, G's loss
    through D, and the gradients of both losses. Returned on the CPU."""
    stream = torch.Generator().manual_seed(1)
    noise, labels = sample_latent(stream, BATCH, Z_DIM, CLASSES)
    real = torch.rand(BATCH, *SHAPE, generator=stream) * 2 - 1
    real_labels = torch.randint(CLASSES, (BATCH,), generator=stream)
    assert labels is not None
    noise, labels, real, real_labels = (t.to(device) for t in (noise, labels, real, real_labels))
    gen, disc = gen.to(device), disc.to(device)
    fake = generate(gen, noise, labels, CLASSES)
    assert fake.device.type == device.type
    d_loss = discriminator_loss(
        forward(disc, real), forward(disc, fake.detach()), 0.9, real_labels, labels, "projection"
    )
    g_loss = generator_loss(forward(disc, fake), "non_saturating", labels, "projection")
    found = {"fake": fake, "d_loss": d_loss, "g_loss": g_loss}
    for prefix, module, loss in (("D", disc, d_loss), ("G", gen, g_loss)):
        names, params = zip(*module.named_parameters(), strict=True)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        found |= {f"{prefix}.{name}.grad": grad for name, grad in zip(names, grads, strict=True) if grad is not None}
    return {name: value.detach().cpu() for name, value in found.items()}


def assert_close_to_scale(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], tolerance: float) -> None:
    """Each tensor within `tolerance` times its own largest magnitude (gradients span decades)."""
    assert got.keys() == want.keys()
    for name, expected in want.items():
        assert got[name].dtype == expected.dtype == torch.float32, name
        error = (got[name] - expected).abs().max().item()
        assert error <= tolerance * expected.abs().max().item() + 1e-7, f"{name}: differs by {error:.3g}"


def test_default_models_compute_on_the_gpu_what_they_compute_on_the_cpu(no_tf32: None) -> None:
    gen, disc = models(compose())
    want = one_round(copy.deepcopy(gen), copy.deepcopy(disc), torch.device("cpu"))
    got = one_round(gen, disc, CUDA)
    # float32 against float32 summed in another order: about 1e-6 apart; a device bug is off by far more.
    assert_close_to_scale(got, want, 1e-3)


def test_bf16_autocast_runs_on_the_gpu_and_returns_float32() -> None:
    gen, disc = models(compose(["train.precision=bf16"]))
    inner: list[torch.dtype] = []  # what the layers computed in: bf16 only if autocast was on
    for module in (gen, disc):
        for layer in module.modules():
            if isinstance(layer, nn.Linear | nn.modules.conv._ConvNd):
                layer.register_forward_hook(lambda _layer, _inputs, output: inner.append(output.dtype))
    got = one_round(gen, disc, CUDA)
    assert torch.bfloat16 in inner
    assert all(torch.isfinite(value).all() for value in got.values())
    # The same models in float32: bf16 keeps 8 bits of mantissa, so G's images and the losses are
    # about 1 % off (0.6 % on the CPU), where a broken path would be off entirely. Gradients are
    # only checked finite: bf16 moves the small ones by more than any tolerance worth stating.
    want = one_round(*models(compose()), CUDA)
    outputs = ("fake", "d_loss", "g_loss")
    assert_close_to_scale({name: got[name] for name in outputs}, {name: want[name] for name in outputs}, 5e-2)


def final_generator(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "generator.pt")["generator"]


def test_a_job_on_the_gpu_over_gloo(tmp_path: Path) -> None:
    """1 server + 2 workers sharing the GPU(s), tensors staged through the CPU, swaps included."""
    overrides = [*TINY, "train.iterations=6", "log.every=1", "mdgan.swap_every_epochs=0.02"]
    run_dir = run_job(tmp_path, 3, [*overrides, "comm.backend=gloo", "train.device=cuda"])
    records = metrics(run_dir)
    assert [r["iteration"] for r in records] == list(range(1, 7)) and records[-1]["swaps"] == 2
    assert all(torch.isfinite(value).all() for value in final_generator(run_dir).values())


@pytest.mark.skipif(
    torch.cuda.device_count() < 2,
    reason=f"NCCL needs one GPU per rank: 2 ranks, {torch.cuda.device_count()} GPU(s) visible",
)
def test_an_nccl_job_trains_what_the_same_job_over_gloo_trains(tmp_path: Path) -> None:
    """1 server + 1 worker, each on its own GPU: NCCL end to end against gloo with the same devices."""
    overrides = [*TINY, "train.iterations=6", "log.every=1"]

    def job(backend: str, device: str) -> Path:
        (tmp_path / backend).mkdir()
        return run_job(tmp_path / backend, 2, [*overrides, f"comm.backend={backend}", f"train.device={device}"])

    nccl, gloo = job("nccl", "auto"), job("gloo", "cuda")  # auto: with NCCL, the rank's own GPU
    assert [r["iteration"] for r in metrics(nccl)] == list(range(1, 7))
    got, want = final_generator(nccl), final_generator(gloo)
    worst = max((got[name].double() - want[name].double()).abs().max().item() for name in want)
    assert worst < 1e-3, f"the generators differ by {worst:.3g}"
