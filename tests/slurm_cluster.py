"""A real SLURM cluster on this machine for tests: munge, one slurmctld and two slurmd "nodes"
(n1, n2) on the loopback address, all in a temporary folder, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

PACKAGES = ["slurmd", "slurmctld", "slurm-client", "munge"]
NODES = ("n1", "n2")

CONF = """\
ClusterName=mdgantest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
AuthType=auth/munge
# A requeued job may start again only when its old credential has expired (120 s by default).
AuthInfo=cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=600
NodeName=n1 NodeHostname={host} NodeAddr=127.0.0.1 Port={node_port1} CPUs=2 State=UNKNOWN
NodeName=n2 NodeHostname={host} NodeAddr=127.0.0.1 Port={node_port2} CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=n[1-2] Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
"""


def install_if_missing() -> None:
    """Debian's SLURM 22.05 and munge, installed the first time (CI machines start without them)."""
    if all(shutil.which(tool) for tool in ("slurmd", "slurmctld", "sbatch", "munged")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and cannot be installed here (needs root and apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, capture_output=True, env=env)
    subprocess.run(["apt-get", "install", "-y", *PACKAGES], check=True, capture_output=True, env=env)


class SlurmCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        for folder in ("state", *(f"spool/{node}" for node in NODES)):
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            CONF.format(host=socket.gethostname(), root=root, ctld_port=16817, node_port1=17001, node_port2=17002)
        )
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def start(self) -> None:
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
            Path("/run/munge").mkdir(parents=True, exist_ok=True)  # no systemd to create it
            subprocess.run(["munged", "--force"], check=True, capture_output=True)
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, env=self.env)
        for node in NODES:
            subprocess.run(["slurmd", "-f", str(self.conf), "-N", node], check=True, env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = self.run("sinfo", "-h", "-N", "-o", "%N %t").stdout.split()
            if states.count("idle") == len(NODES):
                return
            time.sleep(0.5)
        raise AssertionError(f"SLURM nodes not idle within 60 s: {self.run('sinfo', '-N').stdout}\\n{self.logs()}")

    def stop(self) -> None:
        for pid_file in sorted(self.root.glob("*.pid")):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), 15)

    def run(
        self, *command: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, env={**self.env, **(env or {})}, cwd=cwd)

    def submit(self, cwd: Path, env: dict[str, str], *args: str) -> int:
        result = self.run("sbatch", "--parsable", *args, cwd=cwd, env=env)
        assert result.returncode == 0, result.stderr
        return int(result.stdout.strip().split(";")[0])

    def job_state(self, job: int) -> str:
        fields = self.run("scontrol", "show", "job", str(job)).stdout.split()
        return next((field.split("=", 1)[1] for field in fields if field.startswith("JobState=")), "UNKNOWN")

    def wait_for(self, job: int, states: tuple[str, ...], timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.job_state(job)
            if state in states:
                return state
            time.sleep(1)
        raise AssertionError(
            f"job {job} not in {states} within {timeout_s}s (now {self.job_state(job)})\\n{self.logs()}"
        )

    def logs(self) -> str:
        return "\\n".join(
            f"--- {p.name}\\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(self.root.glob("*.log"))
        )
