"""Section bytes: measured bytes vs the analytic figures (per iteration, per swap, per FL-GAN sync)."""

from __future__ import annotations

import argparse
import statistics

from jobs import Result, Runner, Spec
from mdgan_dist.compose import compose
from mdgan_dist.experiments.formatting import exact_ratio, integer
from mdgan_dist.experiments.tables import keyed
from mdgan_dist.job import plan_data

from .analytic import analytic_iteration_bytes, analytic_swap_bytes, analytic_sync_bytes
from .shared_runs import flgan_run, optimisation_workers
from .table import Table


def swap_run(runner: Runner) -> Result:
    """MD-GAN with swaps on, about 10 of them: E chosen from the shard size so that any
    --iterations and batch size give several swaps."""
    workers = 2
    cfg = compose(runner.shared_overrides())
    plan = plan_data(cfg, workers)
    period = max(1, runner.iterations // 10)
    epochs = period * cfg.train.batch_size / statistics.fmean(plan.shard_sizes)
    return runner(Spec("mdgan", workers, (f"mdgan.swap_every_epochs={epochs:.6g}",)))


def section_bytes(args: argparse.Namespace, runner: Runner) -> Table:
    rows = []
    n = optimisation_workers(args)
    iteration_runs = [(f"server per iteration, N={w}", runner(Spec("mdgan", w))) for w in args.workers]
    iteration_runs.append((f"server per iteration, N={n}", runner(Spec("mdgan", n, ("comm.dtype=bfloat16",)))))
    for name, run in iteration_runs:
        rows.append(
            {
                "quantity": name,
                "kind": "iteration",
                "workers": run.spec.workers,
                "dtype": run.cfg.comm.dtype,
                "measured": run.steady_bytes(),
                "analytic": analytic_iteration_bytes(run.cfg, run.spec.workers),
                "formula": "N*(3*b*d*bytes + 2*64)",
            }
        )
    swaps = swap_run(runner)
    for worker in swaps.worker_stats:
        rows.append(
            {
                "quantity": f"per swap, worker rank {worker['rank']} (N={swaps.spec.workers}, {worker['swaps']} swaps)",
                "kind": "swap",
                "workers": swaps.spec.workers,
                "dtype": "float32",
                "measured": worker["swap_bytes_sent"] / worker["swaps"],
                "measured_recv": worker["swap_bytes_recv"] / worker["swaps"],
                "analytic": analytic_swap_bytes(swaps.cfg),
                "formula": "64 + 4*(|D state| + #params + 2*|theta|)",
            }
        )
    flgan = flgan_run(args, runner)
    server = flgan.stats[0]
    rows.append(
        {
            "quantity": f"FL-GAN server per sync (N={flgan.spec.workers}, {server['syncs']} syncs)",
            "kind": "sync",
            "workers": flgan.spec.workers,
            "dtype": "float32",
            "measured": (server["sync_bytes_sent"] + server["sync_bytes_recv"]) / server["syncs"],
            "analytic": analytic_sync_bytes(flgan.cfg, flgan.spec.workers),
            "formula": "N*(64 + 2*(64 + 4*|G,D floating state|))",
        }
    )
    for row in rows:
        row["ratio"] = row["measured"] / row["analytic"]
        row["exact"] = row["measured"] == row["analytic"]
    exact = all(row["exact"] for row in rows)
    return Table(
        "Bytes: measured vs analytic",
        [
            keyed("quantity", "quantity"),
            keyed("dtype", "wire dtype"),
            keyed("measured", "measured bytes", lambda v: f"{v:,.0f}" if v == int(v) else f"{v:,.2f}"),
            keyed("analytic", "analytic bytes", integer),
            keyed("ratio", "measured / analytic", exact_ratio),
            keyed("formula", "analytic formula"),
        ],
        rows,
        notes=[
            "Per iteration: sent + received by the server in one iteration away from control messages "
            "(swaps off), against the paper's 3*b*d*N values (Table III) of the wire dtype plus one 64-byte "
            "header per packet. Per swap: bytes one worker sends per swap (it receives as many), D's "
            "state_dict and Adam state (step + 2 moments per parameter) as float32. FL-GAN: the server's "
            "bytes per averaging, the SYNC order + both models' floating state in and the average out.",
            "Every measured figure equals its analytic one exactly." if exact else "NOT all figures match exactly.",
        ],
        summary={"all_exact": exact},
    )
