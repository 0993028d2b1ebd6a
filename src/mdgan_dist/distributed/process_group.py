"""Backend and device choice, and the process group with a finite timeout."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from mdgan_dist.distributed.env import LaunchEnv
from mdgan_dist.errors import ConfigError


def choose_backend(requested: str, env: LaunchEnv) -> str:
    """auto: NCCL only when every local rank can own a GPU, gloo otherwise."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested == "auto":
        return "nccl" if gpus >= env.local_world_size else "gloo"
    if requested == "nccl" and gpus < env.local_world_size:
        raise ConfigError(
            f"comm.backend=nccl needs one GPU per rank on this node: {env.local_world_size} ranks, "
            f"{gpus} GPUs visible. Use comm.backend=gloo (CPU transport) or start fewer workers"
        )
    return requested


def device_for(backend: str, env: LaunchEnv) -> torch.device:
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
        return torch.device("cuda", env.local_rank)
    return torch.device("cpu")


def restart_safe_store(env: LaunchEnv, timeout: timedelta) -> dist.Store | None:
    """The agent's store under a prefix per restart, or None for the default env:// store.

    torchrun's static rendezvous keeps one TCPStore across restarts and env:// adds no prefix, so
    a restarted rank reads the addresses of the dead attempt and fails to connect ("Gloo
    connectFullMesh failed ... Connection refused"; see pytorch/pytorch#135712 for the same root
    cause with the c10d rendezvous). The restart count is the same on every rank of one node;
    across nodes it is only when each agent counts the restart, see docs/operations.md.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    client = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), env.world_size, is_master=False, timeout=timeout
    )
    return dist.PrefixStore(f"mdgan_dist/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", client)


def init_process_group(backend: str, env: LaunchEnv, device: torch.device, timeout_s: float) -> None:
    # The default timeout is 30 minutes: a silent peer would stall every rank that long.
    timeout = timedelta(seconds=timeout_s)
    dist.init_process_group(
        backend=backend,
        store=restart_safe_store(env, timeout),
        rank=env.rank,
        world_size=env.world_size,
        timeout=timeout,
        device_id=device if device.type == "cuda" else None,
    )
    # Every rank is up before any point-to-point message; NCCL also wants its first operation to
    # involve the whole group, which batch_isend_irecv between two ranks does not.
    dist.barrier()
