"""Jobs of the trainer across a star of namespaces (links.py): one plain process per rank in its
own namespace, as one rank per node of a cluster, gloo between them over the star's links.

    with Star(5, rate_bits=10**9) as star:
        result = runner(Spec("mdgan", 4, ("comm.timeout_s=60",)), LinksLaunch(star, "1 Gbit/s"))
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from jobs import Spec
from links import Node, Star

FIRST_PORT = 29500  # the server's store; each job of a star takes the next (no TIME_WAIT of the last one)
POLL_SECONDS = 0.2


def rank_environment(node: Node, world_size: int, server: Node, port: int) -> dict[str, str]:
    """What a rank alone on its node gets from a launcher, its traffic on the star's interface."""
    return {
        "RANK": str(node.rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": server.address,
        "MASTER_PORT": str(port),
        # gloo would otherwise pick the interface of the host name's address, which the namespace lacks.
        "GLOO_SOCKET_IFNAME": node.interface,
    }


class LinksLaunch:
    """A runner's Launch (jobs.py) that starts rank r in the star's namespace of rank r."""

    def __init__(self, star: Star, name: str) -> None:
        self.star = star
        self.name = f"links, {name}"
        self.ports = itertools.count(FIRST_PORT)

    def __call__(
        self, spec: Spec, argv: list[str], env: dict[str, str] | None, cwd: Path, output: IO[str], timeout_s: float
    ) -> int:
        if spec.algorithm == "standalone":
            raise ValueError("the standalone GAN is one process: it has no links to run over")
        nodes = self.star.nodes[: spec.processes]
        if len(nodes) < spec.processes:
            raise ValueError(f"{spec.processes} ranks on a star of {len(self.star.nodes)}")
        port = next(self.ports)
        train = [sys.executable, "-m", "mdgan_dist.train", *argv]
        processes: list[subprocess.Popen[bytes]] = []
        try:
            for node in nodes:
                rank_env = {**(env or os.environ), **rank_environment(node, len(nodes), nodes[0], port)}
                processes.append(
                    subprocess.Popen(
                        node.command(train), cwd=cwd, env=rank_env, stdout=output, stderr=subprocess.STDOUT
                    )
                )
            return wait(processes, time.monotonic() + timeout_s, train, timeout_s)
        finally:  # also on a timeout or Ctrl-C: no rank outlives its job
            for process in processes:
                if process.poll() is None:
                    process.kill()
                process.wait()


def wait(processes: list[subprocess.Popen[bytes]], deadline: float, command: list[str], timeout_s: float) -> int:
    """Every rank's end, or the first failure: a rank waiting for a failed peer would otherwise wait
    out comm.timeout_s. The first non-zero exit code, or 0."""
    while True:
        codes = [process.poll() for process in processes]
        failed = [code for code in codes if code]
        if failed:
            return failed[0]
        if None not in codes:
            return 0
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(command, timeout_s)
        time.sleep(POLL_SECONDS)
