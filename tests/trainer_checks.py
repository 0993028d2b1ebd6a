"""The trainer's start-up checks in this process: a config composed as mdgan_dist.train composes it,
then mdgan_dist.train.start_up_checks, every check the trainer makes before the process group."""

from __future__ import annotations

from mdgan_dist.compose import compose
from mdgan_dist.config import Config
from mdgan_dist.distributed.env import LaunchEnv
from mdgan_dist.train import start_up_checks


def checked_config(overrides: list[str]) -> Config:
    """The Config rank 0 of a job launched in this environment would train with; raises ConfigError.
    As on a machine without a GPU, whatever this one has: the outcome must not depend on it."""
    cfg = compose(overrides)
    start_up_checks(cfg, LaunchEnv.from_environ(), gpus=0)
    return cfg
