"""Generator and discriminator architectures of the MD-GAN paper (Section V), built by name."""

from mdgan_dist.models.registry import (
    MODEL_NAMES,
    build_discriminator,
    build_generator,
    check_image_shape,
    parameter_count,
)

__all__ = [
    "MODEL_NAMES",
    "build_discriminator",
    "build_generator",
    "check_image_shape",
    "parameter_count",
]
