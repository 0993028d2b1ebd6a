"""Backend and device choice, and the process group with a finite timeout."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from mdgan_dist.distributed.env import LaunchEnv
from mdgan_dist.errors import ConfigError


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def choose_backend(requested: str, env: LaunchEnv, gpus: int) -> str:
    """auto: NCCL only when every local rank can own a GPU, gloo otherwise."""
    if requested == "auto":
        return "nccl" if gpus >= env.local_world_size else "gloo"
    if requested == "nccl" and gpus < env.local_world_size:
        raise ConfigError(
            f"comm.backend=nccl needs one GPU per rank on this node: {env.local_world_size} ranks, "
            f"{gpus} GPUs visible. Use comm.backend=gloo (CPU transport) or start fewer workers"
        )
    return requested


def choose_device(requested: str, backend: str, env: LaunchEnv, gpus: int) -> torch.device:
    """Where models and data live. auto: the rank's own GPU with NCCL, the CPU with gloo; cuda
    also over gloo (ranks may then share GPUs, and the transport stages tensors through the CPU)."""
    if requested == "cpu" and backend == "nccl":
        raise ConfigError("train.device=cpu with comm.backend=nccl: NCCL moves GPU tensors only; use comm.backend=gloo")
    if requested == "cuda" and gpus == 0:
        raise ConfigError("train.device=cuda but no GPU is visible: use train.device=auto or cpu")
    if backend == "nccl":
        return torch.device("cuda", env.local_rank)
    if requested == "cuda":
        return torch.device("cuda", env.local_rank % gpus)
    return torch.device("cpu")


def wire_device(backend: str, device: torch.device) -> torch.device:
    """Where tensors must be to travel: NCCL sends GPU memory, gloo CPU memory."""
    return device if backend == "nccl" else torch.device("cpu")


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
        device_id=device if backend == "nccl" else None,
    )
    # Every rank is up before any point-to-point message; NCCL also wants its first operation to
    # involve the whole group, which batch_isend_irecv between two ranks does not.
    dist.barrier()
