"""Named random streams derived from one seed, so every rank can rebuild any other rank's stream."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed for the stream named by keys, e.g. ("discriminator", 2)."""
    text = repr((seed, *keys)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def generator(seed: int, *keys: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


@contextmanager
def seeded(seed: int, *keys: object) -> Iterator[None]:
    """Seeds torch's global CPU RNG inside the block (model initialisation) and restores it after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, *keys))
        yield
