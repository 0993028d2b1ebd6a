"""Model names, the image shapes each model takes, and the builders the trainer calls."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from mdgan_dist.config import ModelConfig
from mdgan_dist.errors import ConfigError
from mdgan_dist.models import cnn, dcgan, mlp

ImageShape = tuple[int, int, int]


@dataclass(frozen=True)
class _Spec:
    channels: tuple[int, ...] | None  # None: any number of channels
    sizes: tuple[int, ...] | None  # square images of one of these sides; None: any H and W
    generator: Callable[[int, float, ImageShape], nn.Module]  # (z_dim, width, image_shape)
    discriminator: Callable[[float, ImageShape, int], nn.Module]  # (width, image_shape, outputs)
    # D's output for a sample depends on the rest of its batch (minibatch discrimination)
    batch_dependent: bool = False

    def accepts(self, shape: ImageShape) -> bool:
        c, h, w = shape
        channels_ok = self.channels is None or c in self.channels
        return channels_ok and (self.sizes is None or (h == w and h in self.sizes))

    def describe(self) -> str:
        sides = ["HxW"] if self.sizes is None else [f"{size}x{size}" for size in self.sizes]
        return " or ".join(f"{c}x{side}" for c in self.channels or ("C",) for side in sides)


_SPECS: dict[str, _Spec] = {
    "mnist_mlp": _Spec(None, None, mlp.MLPGenerator, mlp.MLPDiscriminator),
    "mnist_cnn": _Spec((1,), (28,), cnn.mnist_generator, cnn.ConvDiscriminator, batch_dependent=True),
    "cifar10_cnn": _Spec((3,), (32,), cnn.cifar10_generator, cnn.ConvDiscriminator, batch_dependent=True),
    "dcgan": _Spec((1, 3), tuple(dcgan.LAYOUTS), dcgan.generator, dcgan.DCGANDiscriminator),
}

MODEL_NAMES: tuple[str, ...] = tuple(_SPECS)


def batch_dependent(cfg: ModelConfig) -> bool:
    """Whether D judges a sample with the rest of its batch (the paper's CNNs' minibatch discrimination)."""
    return _spec(cfg.name).batch_dependent


def check_image_shape(cfg: ModelConfig, image_shape: Sequence[int]) -> None:
    """Raises ConfigError, saying what to change, when model `cfg.name` cannot take these images."""
    spec = _spec(cfg.name)
    shape = _image_shape(image_shape)
    if spec.accepts(shape):
        return
    c, h, w = shape
    data_fixes: list[str] = []  # all of these together make the data fit
    if spec.sizes is not None and not (h == w and h in spec.sizes):
        data_fixes.append(f"set data.image_size={' or '.join(map(str, spec.sizes))}")
    if spec.channels is not None and c not in spec.channels:
        wanted = " or ".join(map(str, spec.channels))
        data_fixes.append(f"use {wanted}-channel images (data.channels={spec.channels[0]} for imagefolder)")
    fitting = ", ".join(name for name, other in _SPECS.items() if other.accepts(shape))
    raise ConfigError(
        f"model {cfg.name} expects {spec.describe()} images, dataset gives {c}x{h}x{w}: "
        f"{' and '.join(data_fixes)} or choose model={fitting}"
    )


def build_generator(cfg: ModelConfig, image_shape: Sequence[int], num_classes: int) -> nn.Module:
    """G: z [b, z_dim] -> images [b, C, H, W] in [-1, 1]. With model.conditional (ACGAN) its input
    is z followed by the one-hot class label, [b, z_dim + num_classes] (sampling.generator_input)."""
    check_image_shape(cfg, image_shape)
    inputs = cfg.z_dim + (num_classes if cfg.conditional else 0)
    return _spec(cfg.name).generator(inputs, cfg.width, _image_shape(image_shape))


def build_discriminator(cfg: ModelConfig, image_shape: Sequence[int], num_classes: int) -> nn.Module:
    """D: images [b, C, H, W] -> one real/fake logit per sample, [b] (no sigmoid); with
    model.conditional (ACGAN) [b, 1 + num_classes]: the real/fake logit, then the class logits."""
    check_image_shape(cfg, image_shape)
    outputs = 1 + (num_classes if cfg.conditional else 0)
    return _spec(cfg.name).discriminator(cfg.width, _image_shape(image_shape), outputs)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        raise ConfigError(f"model={name!r} is not one of {', '.join(MODEL_NAMES)}")
    return _SPECS[name]


def _image_shape(image_shape: Sequence[int]) -> ImageShape:
    """(C, H, W) as plain ints, from a tuple, a list or a torch.Size."""
    if len(image_shape) != 3 or any(int(n) < 1 for n in image_shape):
        raise ConfigError(f"image shape {tuple(image_shape)} is not (C, H, W) with positive sizes")
    c, h, w = (int(n) for n in image_shape)
    return c, h, w
