"""Section network: MD-GAN and FL-GAN over real links, each rank in its own network namespace,
gloo over veth pairs shaped to 10 Gbit/s, 1 Gbit/s and 100 Mbit/s each way (and unshaped), against
a model of the iteration: its compute plus the server's bytes over the link rate. At every rate
the two algorithms at N = 4 with the paper's MNIST MLP; at 1 Gbit/s and 100 Mbit/s, where bytes
cost time, also bfloat16 on the wire, mdgan.overlap, k = 1, mdgan.real_ahead off, N = 10 and the
default model. Needs root (links.py); elsewhere the table says it was skipped. Only when named
(--sections network): it builds and removes network namespaces."""

from __future__ import annotations

import argparse
import itertools
import statistics
from dataclasses import dataclass
from typing import Any

from jobs import Result, Runner, Spec
from link_probe import transfer
from links import QUEUE_BYTES, Star, unavailable
from links_launch import LinksLaunch
from mdgan_dist.experiments.formatting import integer, ms, ratio
from mdgan_dist.experiments.tables import Column, keyed

from .table import Table, range_column

RATES: dict[str, int | None] = {"unshaped": None, "10 Gbit/s": 10**10, "1 Gbit/s": 10**9, "100 Mbit/s": 10**8}
SLOW_RATES = ("1 Gbit/s", "100 Mbit/s")  # where the variants run: their bytes cost time there
WORKERS = 4
ALGORITHMS = {"mdgan": "MD-GAN", "flgan": "FL-GAN"}
# b = 64 and a minute for a rank that cannot reach a peer, whatever --quick makes of the model.
COMMON = ("train.batch_size=64", "comm.timeout_s=60")
# The paper's MNIST MLP (conditional, ACGAN): its bytes per iteration are what the links are for.
PAPER_MLP = ("model=mnist_mlp", "model.width=1.0", "recipe=paper")
DEFAULT_MODEL = ("model=dcgan_small", "model.width=0.5")  # `make train`'s, whatever --quick says


@dataclass(frozen=True)
class Case:
    """One row per rate: an algorithm at N workers (W a process for MD-GAN) with its settings."""

    label: str
    algorithm: str
    workers: int = WORKERS
    per_rank: int = 1
    overrides: tuple[str, ...] = PAPER_MLP
    rates: tuple[str, ...] = tuple(RATES)

    def spec(self, repeat: int) -> Spec:
        return Spec(self.algorithm, self.workers, (*COMMON, *self.overrides), per_rank=self.per_rank, repeat=repeat)


CASES = (
    Case("MD-GAN", "mdgan"),
    Case("FL-GAN", "flgan"),
    Case("MD-GAN, bf16 wire", "mdgan", overrides=(*PAPER_MLP, "comm.dtype=bfloat16"), rates=SLOW_RATES),
    Case("MD-GAN, overlap", "mdgan", overrides=(*PAPER_MLP, "mdgan.overlap=true"), rates=SLOW_RATES),
    Case("MD-GAN, k = 1", "mdgan", overrides=(*PAPER_MLP, "mdgan.k=1"), rates=SLOW_RATES),
    Case("MD-GAN, real_ahead off", "mdgan", overrides=(*PAPER_MLP, "mdgan.real_ahead=false"), rates=SLOW_RATES),
    Case("MD-GAN, N = 10 (W = 5)", "mdgan", workers=10, per_rank=5, rates=SLOW_RATES),
    Case("FL-GAN, N = 10", "flgan", workers=10, rates=SLOW_RATES),
    Case("MD-GAN, default model", "mdgan", overrides=DEFAULT_MODEL, rates=SLOW_RATES),
    Case("FL-GAN, default model", "flgan", overrides=DEFAULT_MODEL, rates=SLOW_RATES),
)
RANKS = max(case.workers // case.per_rank for case in CASES) + 1  # the star's nodes
PROBE_BYTES = 32 * 2**20
TITLE = "Real links: MD-GAN and FL-GAN, ranks in network namespaces"


COLUMNS: list[Column[Any]] = [
    keyed("case", "case"),
    keyed("link", "link"),
    keyed("goodput_bits", "goodput Mbit/s", lambda bits: integer(round(bits / 1e6))),
    keyed("wall_seconds", "ms/iter", ms),
    range_column("range", "range", "wall_min", "wall_max", ms),
    keyed("compute_seconds", "compute ms", ms),
    keyed("server_bytes", "server bytes/iter", lambda value: integer(round(value))),
    keyed("wire_seconds", "wire ms", ms),
    keyed("model_seconds", "model ms", ms),
    keyed("over_model", "measured / model", ratio),
    keyed("pipelined_seconds", "pipelined model ms", ms),
    keyed("over_pipelined", "measured / pipelined", ratio),
    keyed("averagings", "averagings timed"),
    keyed("drops", "drops"),
]


def repeats(args: argparse.Namespace) -> int:
    return 2 if args.quick else 3


def iteration_seconds(run: Result) -> float:
    """The job's mean iteration: FL-GAN's averagings land on a few iterations, which a median drops."""
    return run.mean("iteration_seconds")


def server_bytes(run: Result) -> float:
    return run.mean(lambda record: record["server_bytes_sent"] + record["server_bytes_recv"])


def path_bytes(run: Result, case: Case) -> float:
    """The server's bytes on the iteration's path. FL-GAN: all of them (an averaging needs every
    model in before any goes out). MD-GAN: what it sends, then only the last worker process's
    feedback. Its links are full duplex: the feedback of the processes served first comes back
    while the server still sends to the others, so only the last one's follows all the batches
    (as long as a process computes no longer than the server takes to send the next one's)."""
    if case.algorithm == "flgan":
        return server_bytes(run)
    processes = case.workers // case.per_rank
    return run.mean(lambda record: record["server_bytes_sent"] + record["server_bytes_recv"] / processes)


def averagings(run: Result) -> list[bool]:
    """FL-GAN: whether each timed iteration but the first ended with an averaging of G and D."""
    return [record["syncs"] != before["syncs"] for before, record in itertools.pairwise(run.warm)]


def compute_seconds(run: Result) -> float:
    """The job's compute per iteration, from its own records. MD-GAN: the server's generation and
    G step and the slowest worker's D steps and feedback, which the synchronous iteration runs one
    after the other. FL-GAN: its iterations without an averaging (every worker's local iteration,
    the server's order and the losses back, a few hundred bytes)."""
    if run.spec.algorithm == "mdgan":
        return run.mean(lambda record: record["time_generate"] + record["time_backward"] + record["time_worker_max"])
    local = [record for record, synced in zip(run.warm[1:], averagings(run), strict=True) if not synced]
    return statistics.fmean(record["iteration_seconds"] for record in local)


def row(
    case: Case, link: str, rate: int | None, goodput: float, runs: list[Result], drops: int | None
) -> dict[str, Any]:
    walls = [iteration_seconds(run) for run in runs]
    compute = statistics.median(compute_seconds(run) for run in runs)
    sent = statistics.median(server_bytes(run) for run in runs)
    wire = None if rate is None else sent * 8 / rate
    model = compute + (wire or 0.0)
    path = None if rate is None else statistics.median(path_bytes(run, case) for run in runs) * 8 / rate
    pipelined = compute + (path or 0.0)
    return {
        "case": case.label,
        "algorithm": ALGORITHMS[case.algorithm],
        "workers": case.workers,
        "link": link,
        "rate_bits": rate,
        "goodput_bits": goodput,
        "wall_seconds": statistics.median(walls),
        "wall_min": min(walls),
        "wall_max": max(walls),
        "compute_seconds": compute,
        "server_bytes": sent,
        "wire_seconds": wire,
        "model_seconds": model,
        "over_model": statistics.median(walls) / model,
        "path_wire_seconds": path,
        "pipelined_seconds": pipelined,
        "over_pipelined": statistics.median(walls) / pipelined,
        "averagings": sum(averagings(runs[0])) if case.algorithm == "flgan" else None,
        "drops": drops,
    }


def section_network(args: argparse.Namespace, runner: Runner) -> Table:
    reason = unavailable()
    if reason:
        return Table(TITLE, COLUMNS, notes=[f"Skipped: {reason}."], summary={"skipped": reason})
    rows = []
    for link, rate in RATES.items():
        with Star(RANKS, rate) as star:
            launch = LinksLaunch(star, link)
            goodput = transfer(star.nodes[1], star.nodes[0], PROBE_BYTES).bits_per_second
            for case in (case for case in CASES if link in case.rates):
                before = star.drops()
                runs = [runner(case.spec(repeat), launch) for repeat in range(repeats(args))]
                drops = None if rate is None else star.drops() - before  # unshaped: no queue to drop from
                rows.append(row(case, link, rate, goodput, runs, drops))
    return Table(
        TITLE,
        COLUMNS,
        rows,
        notes=[
            f"Every job: {' '.join(COMMON)}, {runner.iterations} iterations, N = {WORKERS} and the paper's MNIST MLP "
            f"({' '.join(PAPER_MLP)}) unless the case says otherwise; the default model is {' '.join(DEFAULT_MODEL)} "
            "(the section's model and batch win over --quick's). Each rank alone in its network namespace, one process and one thread, joined by a veth pair "
            "to a bridge in a hub namespace (bench/links.py); gloo over TCP on those links, as between the nodes "
            "of a cluster through a switch. A rate shapes both ends of every link (tc tbf): what each rank sends "
            "and what it receives. The server's link carries all its traffic.",
            f"ms/iter: per job the mean iteration time (first 10% dropped; FL-GAN's averagings land on a few "
            f"iterations, which a median would drop); the median and the range over {repeats(args)} jobs. Compute: "
            "from each job's own records: MD-GAN the server's generation and G step plus the slowest worker's D "
            "steps and feedback; FL-GAN the mean of its iterations without an averaging. Server bytes: sent + "
            "received per timed iteration (MD-GAN's swaps off; FL-GAN averages once per local epoch, E = 1). "
            "Wire: server bytes x 8 / rate. Model: compute + wire (unshaped: compute). Pipelined model: compute + "
            "the bytes on the iteration's path x 8 / rate: FL-GAN all of them, MD-GAN what the server sends and "
            "then the last worker process's feedback (the links are full duplex: the others' feedback comes back "
            "while the server still sends). Medians over the jobs.",
            "The rate counts whole frames: TCP, IP and Ethernet headers take about 4.4 % of a full 1,514-byte "
            "frame, and the model leaves them out. Goodput: one TCP stream of "
            f"{PROBE_BYTES // 2**20} MiB from rank 1 to rank 0 over the same links before the jobs. Drops: packets "
            f"the links' queues dropped during the jobs ({QUEUE_BYTES // 2**20} MiB each, meant to hold every "
            "window in flight).",
        ],
        summary={"workers": WORKERS, "overrides": list(COMMON), "cases": [case.label for case in CASES]},
    )
