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

from mdgan_dist.algorithms.flgan.server import FLGANServer
from mdgan_dist.algorithms.flgan.worker import FLGANWorker
from mdgan_dist.algorithms.mdgan.server import Server
from mdgan_dist.algorithms.mdgan.worker import Worker
from mdgan_dist.algorithms.standalone import run_standalone
from mdgan_dist.compose import CONF_DIR, CONFIG_NAME, typed_config
from mdgan_dist.config import Config, validate
from mdgan_dist.config import save as save_config
from mdgan_dist.data import load_shard
from mdgan_dist.distributed.env import LaunchEnv, job_id
from mdgan_dist.distributed.process_group import (
    choose_backend,
    choose_device,
    init_process_group,
    visible_gpus,
    wire_device,
)
from mdgan_dist.distributed.transport import Transport
from mdgan_dist.errors import ConfigError, PeerError
from mdgan_dist.job import DataPlan, check_run_dir_is_new, plan_data
from mdgan_dist.metrics import check_evaluation

log = logging.getLogger("mdgan_dist")


def agree_on_run_dir(cfg: Config, world_size: int) -> Path:
    """All ranks must write to one folder: the configured one, runs/<job id>, or rank 0's clock."""
    if cfg.run.dir is None:
        name = [job_id() or time.strftime("%Y%m%d-%H%M%S")]
        if world_size > 1:
            dist.broadcast_object_list(name, src=0)
        cfg.run.dir = str(Path("runs") / name[0])
    run_dir = Path(cfg.run.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def run_role(cfg: Config, env: LaunchEnv, plan: DataPlan, transport: Transport) -> None:
    run_dir = agree_on_run_dir(cfg, env.world_size)
    num_workers = env.world_size - 1
    if env.is_server:
        save_config(cfg, run_dir / "config.yaml")
        log.info(f"run directory {run_dir}")
        server = Server if cfg.algorithm == "mdgan" else FLGANServer
        server(cfg, transport, num_workers, plan.image_shape, plan.num_classes, run_dir).run()
        return
    shard = load_shard(plan.train, plan.shards[env.rank - 1])
    if cfg.algorithm == "mdgan":
        Worker(cfg, transport, plan.image_shape, plan.num_classes, shard).run(run_dir)
    else:
        FLGANWorker(cfg, transport, plan.image_shape, plan.num_classes, shard).run(run_dir)


def run_alone(cfg: Config, plan: DataPlan, device: torch.device) -> None:
    """algorithm=standalone: no process group, no peers."""
    run_dir = agree_on_run_dir(cfg, world_size=1)
    save_config(cfg, run_dir / "config.yaml")
    run_standalone(cfg, plan, device, run_dir)


def run(raw: DictConfig) -> int:
    env = LaunchEnv.from_environ()
    logging.basicConfig(
        level=logging.INFO if env.is_server else logging.WARNING,
        format=f"%(asctime)s [rank {env.rank}] %(levelname)s %(message)s",
    )
    try:
        cfg = typed_config(raw)
        validate(cfg, env.world_size)
        check_run_dir_is_new(cfg)
        check_evaluation(cfg)
        plan = plan_data(cfg, env.world_size - 1)
        gpus = visible_gpus()
        backend = choose_backend(cfg.comm.backend, env, gpus)
        device = choose_device(cfg.train.device, backend, env, gpus)
        threads = cfg.train.threads or env.threads_per_process()
        torch.set_num_threads(threads)
        log.info(f"{threads} intra-op threads per process (train.threads)")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if cfg.algorithm == "standalone":
            run_alone(cfg, plan, device)
            return 0
        init_process_group(backend, env, device, cfg.comm.timeout_s)
        transport = Transport(
            env.rank, cfg.comm.timeout_s, device, wire_device(backend, device), cfg.fault.tolerate_worker_loss
        )
        run_role(cfg, env, plan, transport)
    except ConfigError as error:
        log.error(f"config error: {error}")
        return 2
    except PeerError as error:
        log.error(str(error))
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
