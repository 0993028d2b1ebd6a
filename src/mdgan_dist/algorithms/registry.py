"""The algorithms the trainer runs, one entry each: its roles, its checks, the options it reads,
where it runs.

Adding an algorithm is writing its package (its roles, each built from a RoleContext, and its
`validate`) and one line in ALGORITHMS; docs/design.md shows how.
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
from mdgan_dist.algorithms.standalone import StandaloneGAN
from mdgan_dist.config import Config, require_choice, validate_fields
from mdgan_dist.fault_plan import FaultPlan, parse_faults
from mdgan_dist.job import DataPlan, plan_data

RoleFactory = Callable[[RoleContext], Role]


def no_data_checks(cfg: Config, plan: DataPlan) -> None:
    """For an algorithm with nothing to check on the data beyond what every one checks."""


def one_per_process(_cfg: Config, world_size: int) -> int:
    """A worker on each process but the server."""
    return world_size - 1


@dataclass(frozen=True)
class Algorithm:
    server: RoleFactory  # rank 0; the whole algorithm when it runs in one process
    worker: RoleFactory | None  # ranks 1..N; None: the algorithm runs in one process
    validate: Callable[[Config, int], None]  # (config, world size): raises ConfigError
    # The options it reads beyond those every algorithm reads (checks.COMMON_SECTIONS): whole
    # sections ("mdgan") or single options ("fault.kill_worker"). Any other set off its default is
    # refused, so that an option never silently does nothing.
    reads: tuple[str, ...] = ()
    check_plan: Callable[[Config, DataPlan], None] = no_data_checks  # once the data is known
    workers: Callable[[Config, int], int] = one_per_process  # (config, world size): N, one data shard each

    @property
    def single_process(self) -> bool:
        return self.worker is None


ALGORITHMS: dict[str, Algorithm] = {
    "mdgan": Algorithm(
        Server,
        Worker,
        mdgan_checks.validate,
        reads=("mdgan", "fault"),
        check_plan=mdgan_checks.check_plan,
        workers=mdgan_checks.num_workers,
    ),
    # FL-GAN drops lost workers and kills them on schedule; the other fault.* are MD-GAN's.
    "flgan": Algorithm(
        FLGANServer,
        FLGANWorker,
        flgan_checks.validate,
        reads=("flgan", "fault.tolerate_worker_loss", "fault.kill_worker"),
    ),
    "standalone": Algorithm(StandaloneGAN, None, require_one_process),
}


def algorithm_of(cfg: Config) -> Algorithm:
    require_choice("algorithm", cfg.algorithm, tuple(ALGORITHMS))
    return ALGORITHMS[cfg.algorithm]


def validate(cfg: Config, world_size: int) -> tuple[Algorithm, FaultPlan]:
    """Every check that needs neither data nor peers, for a job of `world_size` processes;
    raises ConfigError saying what to do. Returns the algorithm's entry and the fault plan, the
    one parse of fault.* (its ranks are the worker processes)."""
    algorithm = algorithm_of(cfg)
    refuse_unread_options(cfg, algorithm.reads)
    algorithm.validate(cfg, world_size)
    validate_fields(cfg)
    return algorithm, parse_faults(cfg.fault, world_size - 1)


def plan(cfg: Config, world_size: int) -> DataPlan:
    """The data plan of a validated config, checked by its algorithm: the whole train split for
    one process, one shard per worker otherwise."""
    algorithm = algorithm_of(cfg)
    data = plan_data(cfg, 0 if algorithm.single_process else algorithm.workers(cfg, world_size))
    algorithm.check_plan(cfg, data)
    return data
