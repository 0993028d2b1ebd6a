"""Iterations per second and the server's bytes per iteration, next to the paper's analytic figure.

Runs the real trainer under torchrun once per worker count and reads its metrics.jsonl:

    python bench/throughput.py --workers 1 2 4 --iterations 300 -- model.width=0.25

The analytic figure is 3*b*d*N values of the wire dtype (float32) per iteration at the server
(paper, Table III), plus one 8-value int64 header per message: one sent to and one received from
each worker.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mdgan_dist.config import load as load_config
from mdgan_dist.config import resolved_k
from mdgan_dist.data import open_dataset

HEADER_BYTES = 8 * 8
VALUE_BYTES = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(workers: int, iterations: int, overrides: list[str], scratch: Path) -> dict:
    run_dir = scratch / f"n{workers}"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={workers + 1}",
        f"--master-port={free_port()}",
        "-m",
        "mdgan_dist.train",
        f"train.iterations={iterations}",
        "log.every=1",
        "log.progress=false",
        f"log.sample_every={iterations}",
        "mdgan.swap_every_epochs=0",
        "eval.every=0",  # scoring is not what this measures
        *overrides,
        f"run.dir={run_dir}",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    job_seconds = time.perf_counter() - started
    cfg = load_config(run_dir / "config.yaml")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    warm = records[len(records) // 10 :]  # the first iterations pay for allocation and warm-up
    seconds = warm[-1]["elapsed_seconds"] - warm[0]["elapsed_seconds"]
    batch, d = cfg.train.batch_size, math.prod(open_dataset(cfg.data, "heldout").image_shape)
    measured = warm[-1]["server_bytes_sent"] + warm[-1]["server_bytes_recv"]
    analytic = 3 * batch * d * workers * VALUE_BYTES
    return {
        "workers": workers,
        "k": resolved_k(cfg.mdgan, workers),
        "batch_size": batch,
        "values_per_sample": d,
        "iterations_per_second": (warm[-1]["iteration"] - warm[0]["iteration"]) / seconds,
        "server_bytes_per_iteration": measured,
        "analytic_payload_bytes": analytic,
        "analytic_with_headers": analytic + 2 * workers * HEADER_BYTES,
        "job_seconds_with_startup": job_seconds,
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        rows = [run(n, args.iterations, args.overrides, Path(scratch)) for n in args.workers]
    print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), torch {torch.__version__}, {time.strftime('%Y-%m-%d')}.")
    print(f"Overrides: {' '.join(args.overrides) or '(defaults)'}; {args.iterations} iterations per run.\n")
    print("| N | k | b | it/s | server bytes/iter | analytic 3*b*d*N*4 | + headers | measured / analytic+headers |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["server_bytes_per_iteration"] / r["analytic_with_headers"]
        print(
            f"| {r['workers']} | {r['k']} | {r['batch_size']} | {r['iterations_per_second']:.1f} | "
            f"{r['server_bytes_per_iteration']:,} | {r['analytic_payload_bytes']:,} | {r['analytic_with_headers']:,} | {ratio:.4f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
