"""The server's ledger of privacy.*: the iterations whose D steps it has released, over every
attempt of a run, kept in the run directory, and the epsilon they spend (privacy.py accounts)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from mdgan_dist.config import Config
from mdgan_dist.errors import ConfigError
from mdgan_dist.privacy import (
    RELEASED_FILE,
    budgeted_iterations,
    d_steps,
    noise_multiplier,
    private,
    record_epsilon,
    sampling_rate,
)

log = logging.getLogger(__name__)


class PrivacyLedger:
    """The server's count of the iterations whose D steps it has released (sent their TRAIN), over
    every attempt of the run, and the epsilon they spend. A resumed run sends again the iterations
    after its checkpoint: they count twice, within privacy.redo_iterations. The count is written to
    the run directory, and flushed to disk, before each TRAIN leaves."""

    def __init__(self, cfg: Config, shard_sizes: list[int], run_dir: Path) -> None:
        assert cfg.privacy.epsilon is not None  # built with privacy on
        self.cfg, self.delta = cfg, cfg.privacy.delta
        self.rate = sampling_rate(cfg, min(shard_sizes))
        self.noise = noise_multiplier(cfg, shard_sizes)
        self.path = run_dir / RELEASED_FILE
        self.released: int | None = None  # read at the first release of this attempt
        log.info(
            "privacy: DP-SGD discriminators, noise multiplier %.4g, clip %.4g, sampling rate %.4g (smallest "
            "shard) to %.4g: (%.4g, %.2g)-DP per record of any shard, replaced by another, after %d iterations (and %d redone)",
            self.noise,
            cfg.privacy.clip,
            self.rate,
            sampling_rate(cfg, max(shard_sizes)),
            self.epsilon(budgeted_iterations(cfg)),
            self.delta,
            cfg.train.iterations,
            cfg.privacy.redo_iterations,
        )

    def epsilon(self, iterations: int) -> float:
        return record_epsilon(self.rate, self.noise, d_steps(self.cfg, iterations), self.delta)

    def release(self, iteration: int) -> None:
        """Counts `iteration`'s D steps as released, before its TRAIN is sent. The first call of an
        attempt refuses a resume whose redone iterations would exceed the budget."""
        if self.released is None:
            # At least the iterations before the resume point went out, with or without the file
            # (a checkpoint of a version that kept none).
            counted = json.loads(self.path.read_text())["released"] if self.path.exists() else 0
            before, budget = max(counted, iteration), budgeted_iterations(self.cfg)
            if before + self.cfg.train.iterations - iteration > budget:
                raise ConfigError(
                    f"resuming at iteration {iteration} would pass the privacy budget: {before} iterations' D "
                    f"steps went out before ({self.path}), and iterations {iteration} to "
                    f"{self.cfg.train.iterations - 1} would add {self.cfg.train.iterations - iteration}, more "
                    f"than the {budget} that train.iterations + privacy.redo_iterations="
                    f"{self.cfg.privacy.redo_iterations} cover, so its epsilon would pass privacy.epsilon="
                    f"{self.cfg.privacy.epsilon}; start a new run, with privacy.redo_iterations set to what "
                    f"resumes may run again (e.g. checkpoint.every={self.cfg.checkpoint.every} per crash)"
                )
            self.released = before
        self.released += 1
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w") as file:
            json.dump({"released": self.released}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)  # the rename itself, on disk
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def scalars(self, done: int) -> dict[str, float]:
        """{"privacy_epsilon": epsilon of the iterations released so far} after a score, a
        checkpoint or the last iteration; {} otherwise (the accountant takes a tenth of a second)."""
        cfg = self.cfg
        if self.released is not None and (
            done == cfg.train.iterations
            or any(every and done % every == 0 for every in (cfg.eval.every, cfg.checkpoint.every))
        ):
            return {"privacy_epsilon": self.epsilon(self.released)}
        return {}


def ledger_for(cfg: Config, shard_sizes: list[int], run_dir: Path) -> PrivacyLedger | None:
    """The ledger of a private run; None without privacy."""
    return PrivacyLedger(cfg, shard_sizes, run_dir) if private(cfg) else None
