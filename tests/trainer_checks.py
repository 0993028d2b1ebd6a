"""The trainer's start-up checks in this process: a config composed as mdgan_dist.train composes it,
then every check mdgan_dist.train.run makes before the process group exists, in its order.

The one place tests compose a trainer config from overrides: switch it here when composition moves.
"""

from __future__ import annotations

from mdgan_dist.config import Config
from mdgan_dist.distributed.env import LaunchEnv
from mdgan_dist.distributed.process_group import choose_backend, choose_device
from mdgan_dist.experiments.compose import trainer_config
from mdgan_dist.job import check_run_dir_is_new, plan_data
from mdgan_dist.metrics import check_evaluation


def checked_config(overrides: list[str], gpus: int = 0) -> Config:
    """The Config rank 0 of a job launched in this environment would train with; raises ConfigError.
    gpus stands for visible_gpus(), so the outcome does not depend on the machine."""
    env = LaunchEnv.from_environ()
    cfg = trainer_config(overrides, env.world_size)  # composes, then validate()
    check_run_dir_is_new(cfg)
    check_evaluation(cfg)
    plan_data(cfg, env.world_size - 1)
    backend = choose_backend(cfg.comm.backend, env, gpus)
    choose_device(cfg.train.device, backend, env, gpus)
    return cfg
