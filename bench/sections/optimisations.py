"""Section optimisations: before/after in one run: wire dtype, overlap, a straggler with a quorum,
the code at --before, and on --device cuda bf16 and channels_last."""

from __future__ import annotations

import argparse

from jobs import Runner, Spec
from mdgan_dist.experiments.formatting import integer, ms, ratio
from mdgan_dist.experiments.tables import keyed

from .shared_runs import optimisation_workers
from .table import Table

STRAGGLER_SECONDS = 0.05


def section_optimisations(args: argparse.Namespace, runner: Runner) -> Table:
    n = optimisation_workers(args)
    baseline = Spec("mdgan", n)
    groups: list[tuple[str, list[tuple[str, Spec]]]] = [
        (
            "wire dtype",
            [("comm.dtype=float32", baseline), ("comm.dtype=bfloat16", Spec("mdgan", n, ("comm.dtype=bfloat16",)))],
        ),
        (
            "overlap",
            [("mdgan.overlap=false", baseline), ("mdgan.overlap=true", Spec("mdgan", n, ("mdgan.overlap=true",)))],
        ),
    ]
    notes = []
    if n >= 2:
        slow = (f"fault.slow_worker={n}@{STRAGGLER_SECONDS:g}",)
        groups.append(
            (
                f"straggler (rank {n} sleeps {STRAGGLER_SECONDS * 1e3:g} ms)",
                [
                    ("quorum unset (waits for all)", Spec("mdgan", n, slow)),
                    (f"mdgan.quorum={n - 1}", Spec("mdgan", n, (*slow, f"mdgan.quorum={n - 1}"))),
                ],
            )
        )
    else:
        notes.append("Straggler rows need N >= 2 (pass --workers with a value from 2 to 4).")
    if args.before_source:
        # Both at the trainer's default threads: the code before has no train.threads.
        groups.append(
            (
                "the protocol's code",
                [
                    (f"{args.before} (before)", Spec("mdgan", n, threads=None, source=args.before_source)),
                    ("this tree", Spec("mdgan", n, threads=None)),
                ],
            )
        )
    if args.device == "cuda":
        cnn = ("model=mnist_cnn",)
        groups.append(
            (
                "GPU precision (model=mnist_cnn)",
                [
                    ("float32", Spec("mdgan", n, cnn)),
                    ("train.precision=bf16", Spec("mdgan", n, (*cnn, "train.precision=bf16"))),
                    (
                        "bf16 + train.channels_last=true",
                        Spec("mdgan", n, (*cnn, "train.precision=bf16", "train.channels_last=true")),
                    ),
                ],
            )
        )
    rows = []
    for group, variants in groups:
        before = runner(variants[0][1])
        for variant, spec in variants:
            run = runner(spec)
            rows.append(
                {
                    "optimisation": group,
                    "variant": variant,
                    "workers": n,
                    "wall_seconds": run.wall,
                    "vs_before": run.wall / before.wall,
                    "bytes_per_iteration": run.steady_bytes(),
                    # The code before (--before) logged neither.
                    "feedbacks_used": run.mean("feedbacks_used") if "feedbacks_used" in run.records[0] else None,
                    "feedbacks_late": run.stats.get(0, {}).get("feedbacks_late"),
                }
            )
    return Table(
        f"Optimisations, before and after (MD-GAN, N={n})",
        [
            keyed("optimisation", "optimisation"),
            keyed("variant", "variant"),
            keyed("wall_seconds", "wall ms/iter", ms),
            keyed("vs_before", "/ first row", ratio),
            keyed("bytes_per_iteration", "server bytes/iter", integer),
            keyed("feedbacks_used", "feedbacks used (mean)", lambda v: f"{v:.2f}"),
            keyed("feedbacks_late", "late feedbacks (run)", integer),
        ],
        rows,
        notes=[
            "Wall: median iteration_seconds, first 10% dropped; each group's first row is its baseline. "
            "Bytes: one iteration's server bytes away from control messages (with a straggler and a quorum "
            "they vary: late feedback is counted when it arrives). Feedbacks used: mean per iteration "
            "of the feedbacks G's step used; late: feedbacks received after their iteration's quorum, "
            "discarded.",
            *notes,
        ],
    )
