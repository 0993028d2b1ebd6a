"""The algorithms the trainer runs, one entry each: its roles, its checks, the options it reads,
where it runs.

Adding an algorithm is writing its package (its server's Training, which the one training loop
runs, and its worker role, each built from a RoleContext; its `validate`) and one line in
ALGORITHMS; docs/design.md shows how.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mdgan_dist.algorithms.checks import refuse_unread_options, require_one_process
from mdgan_dist.algorithms.flgan import checks as flgan_checks
from mdgan_dist.algorithms.flgan.server import FLGANServer
from mdgan_dist.algorithms.flgan.worker import FLGANWorker
from mdgan_dist.algorithms.mdgan import checks as mdgan_checks
from mdgan_dist.algorithms.mdgan.server import Server
from mdgan_dist.algorithms.mdgan.worker import Worker
from mdgan_dist.algorithms.role import Role, RoleContext
from mdgan_dist.algorithms.standalone import DISCRIMINATOR_RANK, StandaloneGAN
from mdgan_dist.algorithms.training import Training
from mdgan_dist.config import Config
from mdgan_dist.fault_plan import FaultPlan, parse_faults
from mdgan_dist.job import DataPlan, plan_data
from mdgan_dist.validation import require_choice, validate_fields

RoleFactory = Callable[[RoleContext], Role]
TrainingFactory = Callable[[RoleContext], Training]
# The fault.* options of an algorithm whose workers answer with models, not feedback: all but
# byzantine_worker, since there is no feedback to lie in.
MODEL_ANSWER_FAULTS = ("tolerate_worker_loss", "kill_worker", "slow_worker", "nan_worker", "checkpoint_error")


def no_data_checks(cfg: Config, plan: DataPlan) -> None:
    """For an algorithm with nothing to check on the data beyond what every one checks."""


def one_per_process(_cfg: Config, world_size: int) -> int:
    """A worker on each process but the server."""
    return world_size - 1


def worker_processes(world_size: int) -> tuple[int, int]:
    """fault.* names the worker processes, and those write checkpoint files besides the server."""
    return world_size - 1, world_size - 1


def standalone_fault_ranks(_world_size: int) -> tuple[int, int]:
    """The one discriminator is named as in MD-GAN's run with one worker, rank 1
    (fault.nan_worker=1@I); the one process writes the only checkpoint file, as the server."""
    return DISCRIMINATOR_RANK, 0


@dataclass(frozen=True)
class Algorithm:
    server: TrainingFactory  # rank 0, in the training loop; the whole algorithm when it runs in one process
    worker: RoleFactory | None  # ranks 1..N; None: the algorithm runs in one process
    validate: Callable[[Config, int], None]  # (config, world size): raises ConfigError
    # The options it reads beyond those every algorithm reads (checks.COMMON_SECTIONS): whole
    # sections ("mdgan") or single options ("fault.kill_worker"). Any other set off its default is
    # refused, so that an option never silently does nothing.
    reads: tuple[str, ...] = ()
    check_plan: Callable[[Config, DataPlan], None] = no_data_checks  # once the data is known
    workers: Callable[[Config, int], int] = one_per_process  # (config, world size): N, one data shard each
    # (world size): the highest rank fault.* may name, and fault.checkpoint_error's
    fault_ranks: Callable[[int], tuple[int, int]] = worker_processes

    @property
    def single_process(self) -> bool:
        return self.worker is None


ALGORITHMS: dict[str, Algorithm] = {
    "mdgan": Algorithm(
        Server,
        Worker,
        mdgan_checks.validate,
        reads=("mdgan", "fault", "privacy"),
        check_plan=mdgan_checks.check_plan,
        workers=mdgan_checks.num_workers,
    ),
    "flgan": Algorithm(
        FLGANServer,
        FLGANWorker,
        flgan_checks.validate,
        reads=("flgan", *(f"fault.{name}" for name in MODEL_ANSWER_FAULTS)),
    ),
    # One process: no worker to lose, kill or slow down.
    "standalone": Algorithm(
        StandaloneGAN,
        None,
        require_one_process,
        reads=("fault.nan_worker", "fault.checkpoint_error"),
        fault_ranks=standalone_fault_ranks,
    ),
}


def algorithm_of(cfg: Config) -> Algorithm:
    require_choice("algorithm", cfg.algorithm, tuple(ALGORITHMS))
    return ALGORITHMS[cfg.algorithm]


def validate(cfg: Config, world_size: int) -> tuple[Algorithm, FaultPlan]:
    """Every check that needs neither data nor peers, for a job of `world_size` processes;
    raises ConfigError saying what to do. Returns the algorithm's entry and the fault plan, the
    one parse of fault.*."""
    algorithm = algorithm_of(cfg)
    refuse_unread_options(cfg, algorithm.reads)
    algorithm.validate(cfg, world_size)
    validate_fields(cfg)
    worker_ranks, writing_ranks = algorithm.fault_ranks(world_size)
    slots = max(1, algorithm.workers(cfg, world_size) // max(1, worker_ranks))  # mdgan.workers_per_rank
    return algorithm, parse_faults(cfg.fault, worker_ranks, writing_ranks, slots)


def plan(cfg: Config, world_size: int) -> DataPlan:
    """The data plan of a validated config, checked by its algorithm: the whole train split for
    one process, one shard per worker otherwise."""
    algorithm = algorithm_of(cfg)
    data = plan_data(cfg, 0 if algorithm.single_process else algorithm.workers(cfg, world_size))
    algorithm.check_plan(cfg, data)
    return data
