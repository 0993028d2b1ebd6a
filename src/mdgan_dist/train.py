"""Entry point: Hydra config -> validated dataclasses -> process group -> the role of this rank.

One box, 1 server + 4 workers:
    torchrun --nproc_per_node=5 -m mdgan_dist.train
Overrides are Hydra's:
    torchrun --nproc_per_node=11 -m mdgan_dist.train data=mnist data.root=/data model=mnist_cnn mdgan.k=1
Rank 0 is the server, ranks 1..N the workers. The baselines run from the same entry point:
    torchrun --nproc_per_node=5 -m mdgan_dist.train algorithm=flgan
    python -m mdgan_dist.train algorithm=standalone
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
import torch
import torch.distributed as dist
from omegaconf import DictConfig

from mdgan_dist.algorithms.clusters import with_clusters
from mdgan_dist.algorithms.loop import Loop
from mdgan_dist.algorithms.registry import Algorithm, plan, validate
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.compose import CONF_DIR, CONFIG_NAME, typed_config
from mdgan_dist.config import Config
from mdgan_dist.config import save as save_config
from mdgan_dist.distributed.env import LaunchEnv
from mdgan_dist.distributed.process_group import (
    choose_backend,
    choose_device,
    init_process_group,
    visible_gpus,
    wire_device,
)
from mdgan_dist.distributed.transport import Transport
from mdgan_dist.errors import CheckpointError, ConfigError, NonFiniteError, PeerError
from mdgan_dist.fault_plan import FaultPlan
from mdgan_dist.job import DataPlan
from mdgan_dist.metrics import check_evaluation
from mdgan_dist.run_directory import check_run_dir, known_run_dir, move_aside

log = logging.getLogger(__name__)


def agree_on_run_dir(cfg: Config, world_size: int) -> Path:
    """All ranks must write to one folder: the configured one, runs/<job id>, or rank 0's clock."""
    if cfg.run.dir is None:
        known = known_run_dir(cfg)
        name = [known.name if known is not None else time.strftime("%Y%m%d-%H%M%S")]
        if world_size > 1 and known is None:
            dist.broadcast_object_list(name, src=0)
        cfg.run.dir = str(Path("runs") / name[0])
    run_dir = Path(cfg.run.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def start_up_checks(cfg: Config, env: LaunchEnv, gpus: int) -> tuple[Algorithm, FaultPlan, DataPlan, str, torch.device]:
    """Every check before the process group, in order, each raising ConfigError: the config for
    this many processes, the evaluation classifier, the data, the run directory, the devices.
    Returns the algorithm's entry, the fault plan, the data plan, the backend and this rank's device."""
    algorithm, faults = validate(cfg, env.world_size)
    check_evaluation(cfg)
    data = plan(cfg, env.world_size)
    set_aside = check_run_dir(cfg, num_workers=len(data.shards))
    backend = choose_backend(cfg.comm.backend, env, gpus)
    device = choose_device(cfg.train.device, backend, env, gpus)
    if set_aside is not None and env.is_server:  # before the process group, so before any rank writes
        log.warning("run.existing=move_aside: the run in %s moved to %s", set_aside, move_aside(set_aside))
    return algorithm, faults, data, backend, device


def run_role(algorithm: Algorithm, ctx: RoleContext, is_server: bool) -> None:
    """Rank 0 (or the only process) writes the config and runs the training loop around the
    algorithm's server, the others a worker; with data.clusters, all first agree on the clusters."""
    if is_server:
        save_config(ctx.cfg, ctx.run_dir / "config.yaml")
        log.info("run directory %s", ctx.run_dir)
    if ctx.cfg.data.clusters:
        ctx = with_clusters(ctx, is_server)
    if is_server:
        Loop(ctx, algorithm.server(ctx)).run()
    else:
        assert algorithm.worker is not None
        algorithm.worker(ctx).run()


def run(raw: DictConfig) -> int:
    env = LaunchEnv.from_environ()
    logging.basicConfig(
        level=logging.INFO if env.is_server else logging.WARNING,
        format=f"%(asctime)s [rank {env.rank}] %(levelname)s %(message)s",
    )
    try:
        cfg = typed_config(raw)
        algorithm, faults, data, backend, device = start_up_checks(cfg, env, visible_gpus())
        threads = cfg.train.threads or env.threads_per_process()
        torch.set_num_threads(threads)
        log.info("%d intra-op threads per process (train.threads)", threads)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if algorithm.single_process:
            ctx = RoleContext(cfg, faults, data, agree_on_run_dir(cfg, world_size=1), device)
            run_role(algorithm, ctx, is_server=True)
            return 0
        init_process_group(backend, env, device, cfg.comm.timeout_s)
        transport = Transport(
            env.rank, cfg.comm.timeout_s, device, wire_device(backend, device), cfg.fault.tolerate_worker_loss
        )
        ctx = RoleContext(cfg, faults, data, agree_on_run_dir(cfg, env.world_size), device, transport)
        run_role(algorithm, ctx, env.is_server)
    except ConfigError as error:
        log.error("config error: %s", error)
        return 2
    except (PeerError, NonFiniteError, CheckpointError) as error:
        log.error("%s", error)
        return 1
    dist.destroy_process_group()
    return 0


# Hydra's own command line (--cfg job, --help, its error messages and exit code 1) in front of
# the composer's conf/ and schema; the composed DictConfig is typed as compose() types it.
@hydra.main(config_path=str(CONF_DIR), config_name=CONFIG_NAME, version_base=None)
def hydra_main(raw: DictConfig) -> None:
    sys.exit(run(raw))


def main() -> None:
    hydra_main()


if __name__ == "__main__":
    main()
