"""The one composer of the configuration: conf/config.yaml (Hydra's YAML groups) over the dataclass
schema of config.py, with Hydra overrides on top. The trainer's command line, mdgan-eval and the
experiment grids all compose here, so the same overrides give the same Config everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mdgan_dist.config import Config
from mdgan_dist.errors import ConfigError

# The package runs from its clone, installed editable: conf/ is at the repository root. Absolute,
# because Hydra resolves a relative path against its caller, which differs between
# `python -m mdgan_dist.train` and the `mdgan-train` console script.
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
CONFIG_NAME = "config"

# The dataclasses are the schema conf/config.yaml names first in its defaults: Hydra type-checks
# every YAML value and override against them.
ConfigStore.instance().store(name="mdgan_schema", node=Config)


def compose(overrides: Sequence[str] = ()) -> Config:
    """The Config these overrides give (not yet validated against a world size); raises ConfigError."""
    return typed_config(compose_raw(overrides))


def compose_raw(overrides: Sequence[str] = ()) -> DictConfig:
    """The composed config before it becomes dataclasses, for comparing its leaves; raises ConfigError."""
    try:
        with hydra.initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            return hydra.compose(config_name=CONFIG_NAME, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(_with_causes(error)) from error


def _with_causes(error: BaseException) -> str:
    """The error and the ones it wraps, as the trainer's command line (Hydra) shows them: "Error
    merging override gan.loss=hinge" says where, its cause what (the value and the ones allowed)."""
    messages: list[str] = []
    cause: BaseException | None = error
    while cause is not None:
        messages.append(str(cause).strip())
        cause = cause.__cause__
    return "\n".join(dict.fromkeys(message for message in messages if message))


def typed_config(raw: DictConfig) -> Config:
    """A composed (or merged) DictConfig as the Config dataclass; raises ConfigError."""
    try:
        cfg = OmegaConf.to_object(raw)
    except OmegaConfBaseException as error:
        raise ConfigError(str(error).strip()) from error
    assert isinstance(cfg, Config)
    return cfg
