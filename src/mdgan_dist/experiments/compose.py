"""Each configuration's trainer config, composed by Hydra as mdgan_dist.train composes it and
validated, so a typo or an impossible value stops a grid before its first run instead of in its tenth."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mdgan_dist.algorithms.registry import validate
from mdgan_dist.config import Config
from mdgan_dist.errors import ConfigError
from mdgan_dist.experiments.paths import CONF_DIR

# The schema conf/config.yaml names, stored as mdgan_dist.train stores it: importing the trainer
# instead would load every algorithm just to read a config.
ConfigStore.instance().store(name="mdgan_schema", node=Config)


def trainer_config(overrides: list[str], world_size: int) -> Config:
    """The Config a run with these overrides and this many processes gets; raises ConfigError."""
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = OmegaConf.to_object(compose(config_name="config", overrides=overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(str(error).strip()) from error
    assert isinstance(cfg, Config)
    validate(cfg, world_size)
    return cfg
