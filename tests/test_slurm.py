"""The multi-node path against real SLURM daemons: the project's own launch/slurm.sbatch, submitted
unchanged with sbatch --nodes=2 (1 server + 3 workers over two slurmd "nodes" on this machine), for
MD-GAN and FL-GAN."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multiproc import TINY, free_port
from slurm_cluster import SlurmCluster, install_if_missing

SBATCH = Path(__file__).resolve().parents[1] / "launch" / "slurm.sbatch"
ITERATIONS = 150
OVERRIDES = [*TINY, f"train.iterations={ITERATIONS}", "log.every=1", "checkpoint.every=10", "gan.disc_steps=4"]
# Each algorithm's own overrides, and the final files its workers write.
ALGORITHMS = {
    "mdgan": ([], [f"discriminator_rank{r}.pt" for r in (1, 2, 3)]),
    "flgan": (["algorithm=flgan"], ["discriminator.pt", *(f"models_rank{r}.pt" for r in (1, 2, 3))]),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> SlurmCluster:
    install_if_missing()
    slurm = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    slurm.start()
    yield slurm
    slurm.stop()


def submit(cluster: SlurmCluster, workdir: Path, overrides: list[str]) -> tuple[int, Path]:
    env = {"MDGAN_PYTHON": sys.executable, "RDZV_PORT": str(free_port())}
    job = cluster.submit(workdir, env, "--nodes=2", str(SBATCH), *OVERRIDES, *overrides)
    return job, workdir / "runs" / f"slurm-{job}"


def logged_iterations(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line)["iteration"] for line in path.open()] if path.exists() else []


def wait_until_logged(run_dir: Path, iteration: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(logged_iterations(run_dir)) < iteration:
        assert time.monotonic() < deadline, f"{run_dir} did not reach iteration {iteration}"
        time.sleep(0.5)


def wait_for_output(path: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and text in path.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"{path} did not say {text!r}"
        time.sleep(0.5)


@pytest.mark.slurm
@pytest.mark.timeout(600)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_requeued_job_resumes_then_checkpoints_requeues_and_resumes_at_a_signal(
    cluster: SlurmCluster, tmp_path: Path, algorithm: str
) -> None:
    """One job: requeued by hand, then signalled as near its time limit; each start resumes in its
    own run directory, the second exactly where the signal stopped it."""
    overrides, final_files = ALGORITHMS[algorithm]
    job, run_dir = submit(cluster, tmp_path, overrides)
    out = tmp_path / f"slurm-{job}.out"
    wait_until_logged(run_dir, 30, timeout_s=180)
    assert cluster.run("scontrol", "requeue", str(job)).returncode == 0
    wait_for_output(out, "restart 1", timeout_s=180)  # SLURM_RESTART_COUNT of the second start
    # The first allocation is gone: more records than it left are the second start's.
    wait_until_logged(run_dir, len(logged_iterations(run_dir)) + 15, timeout_s=180)
    # What `#SBATCH --signal=B:USR1@180` does near the time limit, sent now.
    assert cluster.run("scancel", "--batch", "--signal=USR1", str(job)).returncode == 0
    cluster.wait_for(job, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), timeout_s=300)
    output = out.read_text(errors="replace")
    assert cluster.job_state(job) == "COMPLETED", output[-3000:]
    assert "asked the server to checkpoint and stop" in output and f"requeueing job {job}" in output
    assert "restart 2" in output
    stopped = [line for line in output.splitlines() if "stop requested: checkpoint of iteration" in line]
    assert len(stopped) == 1, output[-3000:]
    stop_iteration = int(stopped[0].split("iteration ")[1].split(" ")[0])

    assert "2 nodes x 2 ranks" in output
    assert logged_iterations(run_dir) == list(range(1, ITERATIONS + 1)), output[-3000:]
    for name in ("config.yaml", "generator.pt", "tensorboard", "samples", *final_files):
        assert (run_dir / name).exists(), name
    resumed = [line for line in output.splitlines() if "INFO resuming from" in line]
    assert len(resumed) == 2, output[-3000:]
    assert all(f"resuming from runs/{run_dir.name}/checkpoints/iteration_" in line for line in resumed)
    assert resumed[1].endswith(f"at iteration {stop_iteration}")  # exactly where it stopped


def test_sbatch_script_asks_for_requeue_and_an_early_signal() -> None:
    script = SBATCH.read_text()
    assert "#SBATCH --requeue" in script and "#SBATCH --signal=B:USR1@" in script
    assert subprocess.run(["bash", "-n", str(SBATCH)]).returncode == 0
