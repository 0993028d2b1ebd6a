"""MD-GAN's speed, side by side, in one run: markdown tables for docs/benchmarks.md and one JSON file.

    python bench/suite.py                                # every section, defaults (make bench)
    python bench/suite.py --quick --json out.json        # tiny models, few iterations (the test)
    python bench/suite.py --device cuda -- model=mnist_cnn
    python bench/suite.py --sections compute protocol bytes --iterations 300
    python bench/suite.py --before 629e071               # also that git ref's trainer, before/after
    sudo python bench/suite.py --quick --sections network  # over real links (root only)

Every distributed figure comes from real jobs of the project's trainer (`python -m
torch.distributed.run --nproc_per_node=N+1 -m mdgan_dist.train`, the standalone GAN as one plain
`python -m mdgan_dist.train algorithm=standalone`), read back from their metrics.jsonl and
stats_rank*.json. Only the per-worker compute comparison runs in this process, on the same step
functions the workers call. Timings are medians after dropping the first 10% of iterations
(warm-up); byte figures are compared with the paper's analytic formulas and must match exactly.

Sections (each one table and one JSON entry):
  compute      per-worker compute of one iteration, MD-GAN vs FL-GAN (CPU seconds, FLOPs)
  protocol     price of the protocol: MD-GAN N=1 vs the standalone GAN, wall per iteration
  scaling      iteration time vs N and where it goes
  bytes        measured bytes vs the analytic figures (per iteration, per swap, per FL-GAN sync)
  memory       peak RSS (and CUDA peak) of the server, the largest worker, FL-GAN, standalone
  optimisations  before/after: wire dtype, overlap, straggler with quorum, (cuda) bf16/channels_last
  guard        what the non-finite guard costs against an iteration's compute (in this process)
  packing      several workers per process (mdgan.workers_per_rank) vs one: time vs N against the
               compute bound, with repeated jobs; peak memory and the largest N that fits
  aggregation  what each rule of mdgan.aggregate costs the server at N = 10 and 50 (in this process)
  privacy      what DP-SGD discriminators cost a worker process's iteration (in this process)
  overlap      a worker's real half computed ahead (mdgan.real_ahead) off and on, N = 4, the paper's
               MLP, the default run and the default model packed, against the compute bound, with
               repeated jobs and bounds
  network      MD-GAN and FL-GAN at N = 4 over real links (network namespaces, veth, tc tbf) at
               10 Gbit/s, 1 Gbit/s and 100 Mbit/s against compute + bytes / rate; only when named,
               and only as root (elsewhere: skipped)
  gpu          every rank on one device (--device cuda): N = 10, 25 and 50 packed onto one worker
               process, b = 100, the default model and the paper's CIFAR10 CNN on random
               images; iteration time, where it goes, device memory; only when named

Extra Hydra overrides after `--` go to every job (and to the in-process models); a section's own
settings win over them for the knob it compares.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from gitref import checkout
from jobs import Runner
from machine import machine
from report import document, header
from sections import OPT_IN, SECTIONS
from sections.gpu import add_arguments as add_gpu_arguments
from sections.gpu import resolve_arguments as resolve_gpu_arguments
from sections.network import RANKS as NETWORK_RANKS
from sections.overlap import add_arguments as add_overlap_arguments
from sections.overlap import resolve_arguments as resolve_overlap_arguments
from sections.packing import add_arguments as add_packing_arguments
from sections.packing import most_processes as packing_processes
from sections.packing import resolve_arguments as resolve_packing_arguments

QUICK = ["model.width=0.0625", "train.batch_size=16"]  # the test's size: seconds per job on 2 cores


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=None, help="per job (default 300; --quick 30)")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="N values (default 1 2 4 8; --quick 1 2)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny models, few iterations: for the test")
    default = [name for name in SECTIONS if name not in OPT_IN]
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=default)
    parser.add_argument("--repetitions", type=int, default=None, help="in-process iterations timed (default 30)")
    parser.add_argument("--json", type=Path, default=None, help="write every table and job here")
    parser.add_argument("--scratch", type=Path, default=None, help="keep the run directories here")
    parser.add_argument("--job-timeout", type=float, default=1800.0, help="seconds before a job is killed")
    parser.add_argument(
        "--before", default=None, help="a git ref: also run its trainer in the optimisations section, for before/after"
    )
    add_packing_arguments(parser)
    add_overlap_arguments(parser)
    add_gpu_arguments(parser)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every job (after --)")
    args = parser.parse_args(argv)
    resolve_packing_arguments(args)
    resolve_overlap_arguments(args)
    resolve_gpu_arguments(args)
    args.iterations = args.iterations or (30 if args.quick else 300)
    args.workers = args.workers or ([1, 2] if args.quick else [1, 2, 4, 8])
    args.repetitions = args.repetitions or (10 if args.quick else 30)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU visible to torch")
    return args


def main(argv: list[str] | None = None) -> None:
    started = time.perf_counter()
    args = parse(argv)
    base = [*(QUICK if args.quick else [])]
    if args.device == "cuda":
        base += ["train.device=cuda", "comm.backend=gloo"]  # the one-GPU benchmark: every rank on it
    most = max(args.workers) + 1
    if "packing" in args.sections:
        most = max(most, packing_processes(args))
    if "network" in args.sections:
        most = max(most, NETWORK_RANKS)
    if "gpu" in args.sections:
        most = max(most, max(args.gpu_processes) + 1)
    info = machine(args.device, most)
    with tempfile.TemporaryDirectory(prefix="mdgan-bench-") as temporary:
        scratch = args.scratch or Path(temporary)
        args.before_source = checkout(args.before, scratch) if args.before else None
        runner = Runner(args.iterations, base, args.overrides, scratch, args.job_timeout)
        tables = {}
        for name in args.sections:
            section_started = time.perf_counter()
            tables[name] = SECTIONS[name](args, runner)
            print(f"[bench] {name}: {time.perf_counter() - section_started:.0f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - started
    print(header(info, runner))
    for table in tables.values():
        print(table.markdown())
    print(f"Total: {total:.0f} s for {len(runner.results)} jobs and the in-process section.")
    if args.json:
        args.json.write_text(json.dumps(document(info, args, runner, tables, total), indent=2))


if __name__ == "__main__":
    main()
