"""Chaos run: a long job under `torchrun --max-restarts`, and K times a random rank (server or
worker) is SIGKILLed or SIGSTOPped at a random moment; the group restarts and resumes. In the end
the final models must equal an uninterrupted run's bit for bit, and no complete checkpoint may ever
have failed verification. Not part of CI: minutes of restarts.

    python bench/chaos.py --faults 20 --json docs/chaos.json

A SIGSTOPped rank is silent: the others give up after comm.timeout_s and exit, and the agent
restarts the group; the stopped process is sent SIGCONT after that, as a hung process that wakes
up would be, and is then ended by the agent.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from mdgan_dist.checkpoint import MANIFEST, checkpoints_root, verify
from mdgan_dist.errors import ConfigError
from mdgan_dist.experiments.launcher import free_port

RANKS = 4  # 1 server + 3 workers
TIMEOUT_S = 5
COMMON = [
    "model.width=0.0625",
    "train.batch_size=16",
    "log.progress=false",
    "eval.every=0",
    "log.every=1",
    "log.sample_every=100000",
    "checkpoint.every=10",
    "mdgan.swap_every_epochs=0.05",
    f"comm.timeout_s={TIMEOUT_S}",
]


def torchrun(run_dir: Path, overrides: list[str], restarts: int) -> subprocess.Popen:
    command = [
        *(sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={RANKS}"),
        *(f"--master-port={free_port()}", f"--max-restarts={restarts}", "--monitor-interval=0.5"),
        *("-m", "mdgan_dist.train", *overrides, f"run.dir={run_dir}"),
    ]
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    log = (run_dir.parent / f"{run_dir.name}.log").open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def rank_pids(run_dir: Path) -> dict[int, int]:
    """The trainer processes of this run, by RANK (through /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if "mdgan_dist.train" in cmdline and str(run_dir) in cmdline:
            rank = next((int(item[5:]) for item in environ if item.startswith(b"RANK=")), None)
            if rank is not None:
                found[rank] = int(entry.name)
    return found


def last_iteration(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return max((json.loads(line).get("iteration", 0) for line in lines[-5:]), default=0)


def group_starts(log_path: Path) -> list[int]:
    """For each start of the group, in order, the iteration its server resumed from (0: fresh)."""
    starts: list[int] = []
    for line in log_path.read_text(errors="replace").splitlines():
        if "INFO run directory" in line:
            starts.append(0)
        elif "INFO resuming from" in line and starts:
            starts[-1] = int(line.rsplit(" ", 1)[1])
    return starts


def corrupted_checkpoints(run_dir: Path) -> list[str]:
    """Complete checkpoints (with a manifest) whose files do not verify."""
    bad = []
    for manifest in checkpoints_root(run_dir).glob(f"*/{MANIFEST}"):
        try:
            digest = json.loads(manifest.read_text())["trajectory_digest"]
            verify(manifest.parent, digest, RANKS - 1)
        except (ConfigError, ValueError, KeyError, OSError) as error:
            if manifest.exists():  # not pruned meanwhile
                bad.append(f"{manifest.parent.name}: {error}")
    return bad


def same_models(run: Path, reference: Path) -> list[str]:
    """The final model files that differ from the reference's (none when equal bit for bit)."""
    differ = []
    for path in sorted(reference.glob("*.pt")):
        want, got = torch.load(path), torch.load(run / path.name)
        tensors = [(key, value) for key, value in flatten(want)]
        other = dict(flatten(got))
        if any(key not in other or not torch.equal(value, other[key]) for key, value in tensors):
            differ.append(path.name)
    return differ


def flatten(value: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        return [(prefix, value)]
    if isinstance(value, dict):
        return [item for key, inner in value.items() for item in flatten(inner, f"{prefix}/{key}")]
    if isinstance(value, list):
        return [item for index, inner in enumerate(value) for item in flatten(inner, f"{prefix}/{index}")]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0, help="of the fault schedule")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    overrides = [*COMMON, f"train.iterations={args.iterations}"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mdgan-chaos-") as scratch:
        reference = Path(scratch) / "reference"
        if torchrun(reference, overrides, 0).wait() != 0:
            raise SystemExit(f"the uninterrupted run failed: {reference}.log")
        run_dir = Path(scratch) / "chaos"
        log_path = run_dir.parent / "chaos.log"
        job = torchrun(run_dir, overrides, args.faults + 5)
        faults: list[dict[str, Any]] = []
        corrupted: set[str] = set()
        resumed_from = 0
        while job.poll() is None and len(faults) < args.faults:
            # Wait for the (re)started group to train, then strike at a random moment.
            while job.poll() is None and last_iteration(run_dir) <= resumed_from + 1:
                time.sleep(0.2)
            time.sleep(rng.uniform(0.0, 2.0))
            pids = rank_pids(run_dir)
            if job.poll() is not None or len(pids) < RANKS:
                continue
            rank, how = rng.randrange(RANKS), rng.choice(["SIGKILL", "SIGSTOP"])
            reached = last_iteration(run_dir)
            os.kill(pids[rank], getattr(signal, how))
            if how == "SIGSTOP":
                # Past every peer's patience (a worker waits up to 2 x comm.timeout_s for the server),
                # so the others give up on it; then it wakes, to be ended by the agent.
                time.sleep(2 * TIMEOUT_S + 3)
                os.kill(pids[rank], signal.SIGCONT)
            # Wait for the restarted group's server to say where it resumed.
            deadline = time.monotonic() + 120
            while job.poll() is None and time.monotonic() < deadline and len(group_starts(log_path)) < len(faults) + 2:
                time.sleep(0.2)
            time.sleep(1.0)
            starts = group_starts(log_path)
            resumed_from = starts[-1] if len(starts) == len(faults) + 2 else reached
            corrupted.update(corrupted_checkpoints(run_dir))
            faults.append({"rank": rank, "signal": how, "reached": reached, "resumed_from": resumed_from})
            print(
                f"[chaos] {len(faults)}: {how} rank {rank} at iteration {reached}, resumed from {resumed_from}",
                file=sys.stderr,
                flush=True,
            )
        code = job.wait()
        corrupted.update(corrupted_checkpoints(run_dir))
        lost = sum(max(fault["reached"] - fault["resumed_from"], 0) for fault in faults)
        restarts = len(group_starts(log_path)) - 1
        differ = same_models(run_dir, reference) if code == 0 else ["the run failed"]
    report = {
        "faults_injected": len(faults),
        "restarts": restarts,
        "survived": code == 0,
        "iterations": args.iterations,
        "iterations_lost": lost,
        "checkpoints_lost": len(corrupted),
        "corrupted": sorted(corrupted),
        "final_models_equal": not differ,
        "differ": differ,
        "faults": faults,
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps({key: value for key, value in report.items() if key != "faults"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
