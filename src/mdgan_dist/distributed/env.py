"""Where this process sits in the job, read from the launcher's environment (torchrun, SLURM)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class LaunchEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def is_server(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environ(cls) -> LaunchEnv:
        # Defaults make a bare `python -m mdgan_dist.train` a world of one, which validation then
        # rejects with a message on how to launch, instead of a KeyError.
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=world_size,
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size))),
        )

    def threads_per_process(self) -> int:
        """Share the node's cores among its ranks: each default thread pool assumes it owns them."""
        return max(1, (os.cpu_count() or 1) // self.local_world_size)


def job_id() -> str | None:
    """An id shared by every rank of a job without talking: SLURM's job id or torchrun's run id."""
    for name in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID"):
        value = os.environ.get(name)
        if value and value != "none":
            return value
    return None
