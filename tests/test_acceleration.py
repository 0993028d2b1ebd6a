"""train.precision, train.channels_last, train.compile, train.threads: on the CPU, tiny models.

bf16 changes the numbers a little and nothing else (float32 state, losses and feedback);
channels_last and compile change none of them beyond rounding; the default is plain float32.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from mdgan_dist.algorithms.acceleration import PLAIN, forward, policy_of
from mdgan_dist.algorithms.components import make_discriminator, make_generator
from mdgan_dist.algorithms.steps import adam, discriminator_step, generate, generator_feedback, sample_latent
from mdgan_dist.config import Config, GANConfig
from mdgan_dist.trajectory import trajectory_settings
from multiproc import TINY, TRAIN, Job

SHAPE = (1, 28, 28)
CLASSES = 10
BATCH = 16


def config(model: str, **train: object) -> Config:
    """An unconditional tiny `model`, with these train.* settings."""
    cfg = Config()
    cfg.model.name, cfg.model.width, cfg.model.conditional = model, 0.0625, False
    for name, value in train.items():
        setattr(cfg.train, name, value)
    return cfg


def one_round(cfg: Config) -> dict[str, object]:
    """G's batch, one D step against it and the feedback of the updated D, from fixed seeds."""
    gen = make_generator(cfg, SHAPE, CLASSES)
    disc = make_discriminator(cfg, SHAPE, CLASSES, 0)
    noise, _ = sample_latent(torch.Generator().manual_seed(1), BATCH, cfg.model.z_dim, None)
    real = torch.rand(BATCH, *SHAPE, generator=torch.Generator().manual_seed(2)) * 2 - 1
    generated = generate(gen, noise, None, CLASSES)
    d_loss = discriminator_step(
        disc, adam(disc, 2e-4, 0.5, 0.999), (real, None), (generated.detach(), None), GANConfig()
    )
    feedback, g_loss, _ = generator_feedback(disc, generated, GANConfig())
    return {"gen": gen, "disc": disc, "generated": generated, "d_loss": d_loss, "feedback": feedback, "g_loss": g_loss}


def largest_conv_weight(module: nn.Module) -> torch.Tensor:
    """Of a conv with several channels in and out: with one of them both memory formats coincide."""
    weights = [layer.weight for layer in module.modules() if isinstance(layer, nn.modules.conv._ConvNd)]
    return max(weights, key=torch.Tensor.numel)


@pytest.mark.parametrize("model", ["mnist_mlp", "mnist_cnn"])
def test_bf16_keeps_losses_and_feedback_in_float32(model: str) -> None:
    want = one_round(config(model))
    got = one_round(config(model, precision="bf16"))
    assert got["generated"].dtype == torch.float32 and got["generated"].shape == want["generated"].shape
    feedback = got["feedback"]
    assert feedback.dtype == torch.float32 and feedback.shape == want["generated"].shape
    assert feedback.is_contiguous() and torch.isfinite(feedback).all() and feedback.abs().sum() > 0
    for name in ("d_loss", "g_loss"):
        assert got[name] == pytest.approx(want[name], rel=5e-2), name
    for module in ("gen", "disc"):
        assert all(p.dtype == torch.float32 for p in got[module].parameters())
        assert all(p.grad is None or p.grad.dtype == torch.float32 for p in got[module].parameters())


def test_channels_last_applies_to_convolutions_and_changes_nothing() -> None:
    want = one_round(config("mnist_cnn"))
    got = one_round(config("mnist_cnn", channels_last=True))
    for module in ("gen", "disc"):
        assert largest_conv_weight(got[module]).is_contiguous(memory_format=torch.channels_last), module
        assert not largest_conv_weight(want[module]).is_contiguous(memory_format=torch.channels_last), module
    assert got["generated"].is_contiguous() and got["feedback"].is_contiguous()  # both are sent as they are
    torch.testing.assert_close(got["generated"], want["generated"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["feedback"], want["feedback"], rtol=1e-5, atol=1e-5)
    assert got["d_loss"] == pytest.approx(want["d_loss"], rel=1e-5)
    assert got["g_loss"] == pytest.approx(want["g_loss"], rel=1e-5)
    # The state_dict is the plain model's: checkpoints and swaps do not depend on the option. (Adam's
    # first step moves a weight by lr = 2e-4 whatever its gradient: a rounding-size gradient may flip.)
    assert got["disc"].state_dict().keys() == want["disc"].state_dict().keys()
    for name, value in want["disc"].state_dict().items():
        torch.testing.assert_close(got["disc"].state_dict()[name], value, rtol=0, atol=4e-4)


@pytest.mark.parametrize("train", [{}, {"precision": "bf16", "channels_last": True}], ids=["plain", "bf16-cl"])
def test_a_parameter_snapshot_runs_like_the_model(train: dict) -> None:
    """forward(G, x, snapshot): G's forward with other parameters (MD-GAN's mdgan.overlap)."""
    gen = make_generator(config("mnist_cnn", **train), SHAPE, CLASSES)
    noise = torch.randn(4, 100)  # model.z_dim, unconditional
    snapshot = {name: param.detach().clone().requires_grad_(True) for name, param in gen.named_parameters()}
    got = forward(gen, noise, snapshot)
    torch.testing.assert_close(got, forward(gen, noise), rtol=0, atol=0)
    got.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in snapshot.values())
    assert all(p.grad is None for p in gen.parameters())


def test_channels_last_leaves_mlps_alone() -> None:
    assert policy_of(make_discriminator(config("mnist_mlp", channels_last=True), SHAPE, CLASSES, 0)) == PLAIN


def test_the_default_is_plain_float32() -> None:
    round_ = one_round(config("mnist_cnn"))
    assert policy_of(round_["gen"]) == PLAIN and policy_of(round_["disc"]) == PLAIN


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None,
    reason="no C++ compiler (g++ or c++) on PATH: torch.compile's CPU backend (inductor) needs one",
)
def test_compiled_models_compute_the_same_round() -> None:
    """Compilation takes ~20-40 s on 2 cores; one tiny MLP round, keys of the plain state_dict."""
    want = one_round(config("mnist_mlp"))
    got = one_round(config("mnist_mlp", compile=True))
    assert got["gen"].state_dict().keys() == want["gen"].state_dict().keys()
    torch.testing.assert_close(got["feedback"], want["feedback"], rtol=1e-4, atol=1e-6)
    assert got["d_loss"] == pytest.approx(want["d_loss"], rel=1e-4)


def test_threads_are_not_part_of_the_trajectory_but_precision_is() -> None:
    base = trajectory_settings(config("mnist_cnn"), 2)
    assert trajectory_settings(config("mnist_cnn", threads=3), 2) == base
    assert trajectory_settings(config("mnist_cnn", precision="bf16"), 2) != base
    # Of comm., only the wire dtype changes what is computed.
    wire = config("mnist_cnn")
    wire.comm.timeout_s = 5.0
    assert trajectory_settings(wire, 2) == base
    wire.comm.dtype = "bfloat16"
    assert trajectory_settings(wire, 2) != base


@pytest.mark.slow
def test_a_bf16_channels_last_run_with_one_thread(tmp_path: Path) -> None:
    """The options reach the trainer: a standalone CNN run trains in bf16 with train.threads=1."""
    overrides = [
        *TINY, "algorithm=standalone", "model=mnist_cnn", "train.iterations=2", "train.precision=bf16",
        "train.channels_last=true", "train.threads=1", f"run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    job = Job(tmp_path, 1, TRAIN, overrides)
    assert job.wait(120) == [0], job.outputs()
    assert "1 intra-op threads per process" in job.ranks[0].output
    state = torch.load(tmp_path / "run" / "generator.pt")["generator"]
    assert all(value.dtype == torch.float32 for value in state.values() if value.is_floating_point())
