"""A worker process's own checkpoint file, the same for every distributed algorithm: written on the
server's Checkpoint order (the server writes its own file and the manifest once every worker has
answered), read back at start when the handshake names an iteration to resume from."""

from __future__ import annotations

import logging

import torch

from mdgan_dist.algorithms.fault import disk_full_if_scheduled
from mdgan_dist.algorithms.finite import require_finite_state
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.algorithms.training import Stateful
from mdgan_dist.checkpoint import atomic_save, checkpoint_dir, find_worker_file, resume_directory, worker_file
from mdgan_dist.checkpoint import load as load_checkpoint
from mdgan_dist.distributed.protocol import Checkpoint

log = logging.getLogger(__name__)


class WorkerCheckpoints:
    """Saves and restores `state` (the worker's Stateful parts) and the torch RNG state."""

    def __init__(self, ctx: RoleContext, state: Stateful) -> None:
        self.ctx = ctx
        self.state = state
        self.disk_full_at = ctx.faults.checkpoint_errors.get(ctx.transport.rank)

    def resume(self, start: int) -> None:
        """Loads this worker's file of the checkpoint at iteration `start`; 0: a fresh run."""
        if start == 0:
            return
        directory = resume_directory(self.ctx.cfg, self.ctx.run_dir, start)
        saved = load_checkpoint(find_worker_file(directory, self.ctx.transport.rank), self.ctx.device)
        self.state.load_state_dict(saved)
        torch.set_rng_state(saved["rng"])

    def write(self, iteration: int, holds: list[int] | None = None) -> None:
        """Writes this worker's file (named after the discriminators it holds, if it swaps them),
        then tells the server whether it could; the server decides what follows a failure."""
        transport = self.ctx.transport
        rank = transport.rank
        state = {"iteration": iteration, **self.state.state_dict(), "rng": torch.get_rng_state()}
        require_finite_state(state, rank, iteration, "the worker's checkpoint")
        path = worker_file(checkpoint_dir(self.ctx.run_dir, iteration), rank, holds)
        try:
            disk_full_if_scheduled(self.disk_full_at, iteration, path)
            atomic_save(state, path)
            failed = False
        except OSError as error:
            log.error("rank %d could not write its checkpoint of iteration %d: %s", rank, iteration, error)
            failed = True
        answer = transport.header(Checkpoint(iteration, failed))
        transport.exchange(f"checkpoint at iteration {iteration}", sends=[(0, answer)])
