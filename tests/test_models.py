"""The models of the paper's Section V: shapes, parameter counts, gradients, minibatch
discrimination, shape checks and seeded determinism. `pytest -s` prints the parameter counts."""

from __future__ import annotations

from functools import partial
from itertools import pairwise

import pytest
import torch
from torch import nn

from mdgan_dist.config import ModelConfig
from mdgan_dist.errors import ConfigError
from mdgan_dist.models import (
    MODEL_NAMES,
    build_discriminator,
    build_generator,
    check_image_shape,
    parameter_count,
)
from mdgan_dist.models.minibatch import MinibatchDiscrimination
from mdgan_dist.models.sampling import generator_input

Shape = tuple[int, int, int]
TINY = 0.0625
Z_DIM = 100
CLASSES = 10

# (model, image shape) pairs the models must take; mnist_mlp takes any shape.
CASES = [
    ("mnist_mlp", (1, 28, 28)),
    ("mnist_mlp", (3, 20, 24)),
    ("mnist_cnn", (1, 28, 28)),
    ("cifar10_cnn", (3, 32, 32)),
    ("dcgan", (1, 28, 28)),
    ("dcgan", (1, 32, 32)),
    ("dcgan", (3, 32, 32)),
]
MBD_CASES = [case for case in CASES if case[0] in ("mnist_cnn", "cifar10_cnn")]


def case_id(value: object) -> str | None:
    """Test ids like mnist_cnn-1x28x28; None lets pytest name the other parameters."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else None


def build(
    name: str, shape: Shape, width: float, seed: int = 0, conditional: bool = False
) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    cfg = ModelConfig(name=name, z_dim=Z_DIM, width=width, conditional=conditional)
    return build_generator(cfg, shape, CLASSES), build_discriminator(cfg, shape, CLASSES)


def images(batch: int, shape: Shape, seed: int) -> torch.Tensor:
    return torch.rand(batch, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# Parameter counts by hand from the layer lists (z_dim 100, width 1.0).
def linear(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def conv(n_in: int, n_out: int, kernel: int, bias: bool = True) -> int:
    return n_in * n_out * kernel * kernel + (n_out if bias else 0)


def batchnorm(n: int) -> int:
    return 2 * n


def conv_discriminator(channels: int) -> int:
    """Six 3x3 convs to 512x4x4 = 8192 features, minibatch tensor 8192x100x5, FC 8192+100 -> 1."""
    sizes = (channels, 16, 32, 64, 128, 256, 512)
    convs = sum(conv(a, b, 3) for a, b in pairwise(sizes))
    return convs + 8192 * 100 * 5 + linear(8192 + 100, 1)


EXPECTED_COUNTS = {
    "mnist_mlp": (
        linear(100, 512) + linear(512, 512) + linear(512, 784),
        linear(784, 512) + linear(512, 512) + linear(512, 1),
    ),
    "mnist_cnn": (
        linear(100, 128 * 7 * 7, bias=False)
        + batchnorm(128)
        + conv(128, 32, 5, bias=False)
        + batchnorm(32)
        + conv(32, 1, 5),
        conv_discriminator(1),
    ),
    "cifar10_cnn": (
        linear(100, 384 * 4 * 4, bias=False)
        + batchnorm(384)
        + conv(384, 192, 5, bias=False)
        + batchnorm(192)
        + conv(192, 96, 5, bias=False)
        + batchnorm(96)
        + conv(96, 3, 5),
        conv_discriminator(3),
    ),
    "dcgan": (
        linear(100, 256 * 4 * 4, bias=False)
        + batchnorm(256)
        + conv(256, 128, 4, bias=False)
        + batchnorm(128)
        + conv(128, 64, 4, bias=False)
        + batchnorm(64)
        + conv(64, 3, 4),
        conv(3, 64, 4) + conv(64, 128, 4) + conv(128, 256, 4) + conv(256, 1, 4),
    ),
}
PAPER_SHAPES = {
    "mnist_mlp": (1, 28, 28),
    "mnist_cnn": (1, 28, 28),
    "cifar10_cnn": (3, 32, 32),
    "dcgan": (3, 32, 32),
}


def test_dcgan_for_28x28_images_is_one_upsampling_shorter() -> None:
    generator, discriminator = build("dcgan", (1, 28, 28), 1.0)
    expected_g = (
        linear(100, 128 * 7 * 7, bias=False) + batchnorm(128) + conv(128, 64, 4, bias=False) + batchnorm(64)
    ) + conv(64, 1, 4)
    assert parameter_count(generator) == expected_g
    assert parameter_count(discriminator) == conv(1, 64, 4) + conv(64, 128, 4) + conv(128, 1, 7)


def test_model_names() -> None:
    assert MODEL_NAMES == ("mnist_mlp", "mnist_cnn", "cifar10_cnn", "dcgan")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_counts_at_paper_width(name: str) -> None:
    generator, discriminator = build(name, PAPER_SHAPES[name], 1.0)
    counts = parameter_count(generator), parameter_count(discriminator)
    shape = "x".join(map(str, PAPER_SHAPES[name]))
    print(f"\n{name} {shape}: G {counts[0]:,} D {counts[1]:,} parameters")
    assert counts == EXPECTED_COUNTS[name]
    tiny = build(name, PAPER_SHAPES[name], TINY)
    assert all(parameter_count(t) < c / 10 for t, c in zip(tiny, counts))  # width really scales


@pytest.mark.parametrize("width", [1.0, TINY, 1e-3])
@pytest.mark.parametrize(("name", "shape"), CASES, ids=case_id)
def test_shapes_and_ranges(name: str, shape: Shape, width: float) -> None:
    generator, discriminator = build(name, shape, width)
    for batch in (5, 1):  # a batch of one must work too: BatchNorm, minibatch discrimination
        fake = generator(torch.randn(batch, Z_DIM))
        assert fake.shape == (batch, *shape)
        assert fake.min() >= -1 and fake.max() <= 1
        logits = discriminator(fake)
        assert logits.shape == (batch,)
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("name", "shape"), CASES, ids=case_id)
def test_acgan_pairs_take_labels_and_give_class_logits(name: str, shape: Shape) -> None:
    """model.conditional: G takes z and a one-hot label, D gives 1 real/fake + CLASSES class logits
    (the paper's 11 outputs on MNIST); the unconditional pair keeps its sizes."""
    generator, discriminator = build(name, shape, TINY, conditional=True)
    plain_generator, plain_discriminator = build(name, shape, TINY)
    z = torch.randn(5, Z_DIM)
    fake = generator(generator_input(z, torch.arange(5), CLASSES))
    assert fake.shape == (5, *shape)
    assert discriminator(fake).shape == (5, 1 + CLASSES)
    extra_inputs = parameter_count(generator) - parameter_count(plain_generator)
    extra_outputs = parameter_count(discriminator) - parameter_count(plain_discriminator)
    first_generator_layer = next(m for m in generator.modules() if isinstance(m, nn.Linear))
    assert extra_inputs == CLASSES * first_generator_layer.out_features
    assert extra_outputs > 0 and extra_outputs % CLASSES == 0  # CLASSES more output units


@pytest.mark.parametrize("width", [1.0, TINY])
@pytest.mark.parametrize(("name", "shape"), CASES, ids=case_id)
def test_differentiable_end_to_end(name: str, shape: Shape, width: float) -> None:
    generator, discriminator = build(name, shape, width)
    discriminator(generator(torch.randn(4, Z_DIM))).sum().backward()
    for param_name, param in generator.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, param_name

    # The trainer sends workers' d loss / d x back to the server: D must pass gradients to x.
    x = images(4, shape, seed=1).requires_grad_()
    discriminator(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("width", [1.0, TINY])
@pytest.mark.parametrize(("name", "shape"), MBD_CASES, ids=case_id)
def test_minibatch_discrimination_sees_the_batch(name: str, shape: Shape, width: float) -> None:
    _, discriminator = build(name, shape, width)
    x = images(6, shape, seed=2)
    logits = discriminator(x)

    # A sample's logit depends on the other samples of its batch ...
    others_changed = torch.cat([x[:1], images(5, shape, seed=3)])
    assert not torch.allclose(discriminator(others_changed)[0], logits[0])
    assert not torch.allclose(discriminator(x[:1])[0], logits[0])

    # ... but not on their order: permuting the batch permutes the logits.
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(discriminator(x[perm]), logits[perm])


def test_minibatch_discrimination_matches_the_definition() -> None:
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(in_features=7, kernels=4, kernel_dim=3)
    features = torch.randn(5, 7)
    m = (features @ layer.T).view(5, 4, 3)
    closeness = [sum(torch.exp(-(m[i] - m[j]).abs().sum(dim=1)) for j in range(5) if j != i) for i in range(5)]
    expected = torch.stack(closeness)
    out = layer(features)
    assert out.shape == (5, 7 + 4) and layer.out_features == 11
    torch.testing.assert_close(out[:, :7], features)
    torch.testing.assert_close(out[:, 7:], expected)

    # A sample never counts itself: alone it scores 0, and with its twin exactly exp(-0) = 1.
    assert torch.equal(layer(features[:1])[:, 7:], torch.zeros(1, 4))
    assert torch.equal(layer(features[:1].repeat(2, 1))[:, 7:], torch.ones(2, 4))


@pytest.mark.parametrize(("name", "shape"), CASES, ids=case_id)
def test_seeded_builds_are_identical(name: str, shape: Shape) -> None:
    first, second, other = (build(name, shape, TINY, seed) for seed in (0, 0, 1))
    for a, b, c in zip(first, second, other):
        state_a, state_b, state_c = a.state_dict(), b.state_dict(), c.state_dict()
        assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)
        assert not all(torch.equal(state_a[key], state_c[key]) for key in state_a)


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        (
            "dcgan",
            (1, 64, 64),
            "model dcgan expects 1x28x28 or 1x32x32 or 3x28x28 or 3x32x32 images, dataset gives 1x64x64: "
            "set data.image_size=28 or 32 or choose model=mnist_mlp",
        ),
        (
            "mnist_cnn",
            (3, 32, 32),
            "model mnist_cnn expects 1x28x28 images, dataset gives 3x32x32: set data.image_size=28 "
            "and use 1-channel images (data.channels=1 for imagefolder) "
            "or choose model=mnist_mlp, cifar10_cnn, dcgan",
        ),
        (
            "cifar10_cnn",
            (1, 32, 32),
            "model cifar10_cnn expects 3x32x32 images, dataset gives 1x32x32: "
            "use 3-channel images (data.channels=3 for imagefolder) or choose model=mnist_mlp, dcgan",
        ),
    ],
)
def test_shape_mismatch_says_what_to_do(name: str, shape: Shape, message: str) -> None:
    cfg = ModelConfig(name=name, width=TINY)
    for check in (
        check_image_shape,
        partial(build_generator, num_classes=CLASSES),
        partial(build_discriminator, num_classes=CLASSES),
    ):
        with pytest.raises(ConfigError) as error:
            check(cfg, shape)
        assert str(error.value) == message


def test_unknown_model_lists_the_names() -> None:
    with pytest.raises(ConfigError) as error:
        check_image_shape(ModelConfig(name="resnet"), (1, 28, 28))
    assert "resnet" in str(error.value)
    assert all(name in str(error.value) for name in MODEL_NAMES)


@pytest.mark.parametrize("shape", [(28, 28), (1, 0, 28)])
def test_malformed_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="not \\(C, H, W\\)"):
        check_image_shape(ModelConfig(name="mnist_mlp"), shape)


@pytest.mark.parametrize(("name", "shape"), CASES, ids=case_id)
def test_accepted_shapes_pass(name: str, shape: Shape) -> None:
    check_image_shape(ModelConfig(name=name), shape)
