"""Section network: MD-GAN and FL-GAN at N = 4 with the paper's MNIST MLP over real links, each
rank in its own network namespace, gloo over veth pairs shaped to 10 Gbit/s, 1 Gbit/s and
100 Mbit/s each way (and unshaped), against a model of the iteration: its compute plus the
server's bytes over the link rate. Needs root (links.py); elsewhere the table says it was skipped.
Only when named (--sections network): it builds and removes network namespaces."""

from __future__ import annotations

import argparse
import itertools
import statistics
from typing import Any

from jobs import Result, Runner, Spec
from link_probe import transfer
from links import QUEUE_BYTES, Star, unavailable
from links_launch import LinksLaunch
from mdgan_dist.experiments.formatting import integer, ms, ratio
from mdgan_dist.experiments.tables import Column, keyed

from .table import Table

RATES: dict[str, int | None] = {"unshaped": None, "10 Gbit/s": 10**10, "1 Gbit/s": 10**9, "100 Mbit/s": 10**8}
WORKERS = 4
ALGORITHMS = {"mdgan": "MD-GAN", "flgan": "FL-GAN"}
# The paper's MNIST MLP (conditional, ACGAN, b = 64), whatever --quick makes of the model: its
# bytes per iteration are what the links are for. A rank that cannot reach a peer fails in a minute.
OVERRIDES = ("model=mnist_mlp", "model.width=1.0", "recipe=paper", "train.batch_size=64", "comm.timeout_s=60")
PROBE_BYTES = 32 * 2**20
TITLE = f"Real links: N = {WORKERS}, the paper's MNIST MLP, ranks in network namespaces"


COLUMNS: list[Column[Any]] = [
    keyed("algorithm", "algorithm"),
    keyed("link", "link"),
    keyed("goodput_bits", "goodput Mbit/s", lambda bits: integer(round(bits / 1e6))),
    keyed("wall_seconds", "ms/iter", ms),
    Column("range", "range", lambda row: f"{ms(row['wall_min'])}-{ms(row['wall_max'])}"),
    keyed("compute_seconds", "compute ms", ms),
    keyed("server_bytes", "server bytes/iter", lambda value: integer(round(value))),
    keyed("wire_seconds", "wire ms", ms),
    keyed("model_seconds", "model ms", ms),
    keyed("over_model", "measured / model", ratio),
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
    algorithm: str, link: str, rate: int | None, goodput: float, runs: list[Result], drops: int | None
) -> dict[str, Any]:
    walls = [iteration_seconds(run) for run in runs]
    compute = statistics.median(compute_seconds(run) for run in runs)
    sent = statistics.median(server_bytes(run) for run in runs)
    wire = None if rate is None else sent * 8 / rate
    model = compute + (wire or 0.0)
    return {
        "algorithm": ALGORITHMS[algorithm],
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
        "averagings": sum(averagings(runs[0])) if algorithm == "flgan" else None,
        "drops": drops,
    }


def section_network(args: argparse.Namespace, runner: Runner) -> Table:
    reason = unavailable()
    if reason:
        return Table(TITLE, COLUMNS, notes=[f"Skipped: {reason}."], summary={"skipped": reason})
    rows = []
    for link, rate in RATES.items():
        with Star(WORKERS + 1, rate) as star:
            launch = LinksLaunch(star, link)
            goodput = transfer(star.nodes[1], star.nodes[0], PROBE_BYTES).bits_per_second
            for algorithm in ALGORITHMS:
                before = star.drops()
                runs = [runner(Spec(algorithm, WORKERS, OVERRIDES, repeat=n), launch) for n in range(repeats(args))]
                drops = None if rate is None else star.drops() - before  # unshaped: no queue to drop from
                rows.append(row(algorithm, link, rate, goodput, runs, drops))
    return Table(
        TITLE,
        COLUMNS,
        rows,
        notes=[
            f"Every job: {' '.join(OVERRIDES)}, {runner.iterations} iterations (the section's model and batch "
            "win over --quick's). Each rank alone in its network namespace, one process and one thread, joined by a veth pair "
            "to a bridge in a hub namespace (bench/links.py); gloo over TCP on those links, as between the nodes "
            "of a cluster through a switch. A rate shapes both ends of every link (tc tbf): what each rank sends "
            "and what it receives. The server's link carries all its traffic.",
            f"ms/iter: per job the mean iteration time (first 10% dropped; FL-GAN's averagings land on a few "
            f"iterations, which a median would drop); the median and the range over {repeats(args)} jobs. Compute: "
            "from each job's own records: MD-GAN the server's generation and G step plus the slowest worker's D "
            "steps and feedback; FL-GAN the mean of its iterations without an averaging. Server bytes: sent + "
            "received per timed iteration (MD-GAN's swaps off; FL-GAN averages once per local epoch, E = 1). "
            "Wire: server bytes x 8 / rate. Model: compute + wire (unshaped: compute). Medians over the jobs.",
            "The rate counts whole frames: TCP, IP and Ethernet headers take about 4.4 % of a full 1,514-byte "
            "frame, and the model leaves them out. Goodput: one TCP stream of "
            f"{PROBE_BYTES // 2**20} MiB from rank 1 to rank 0 over the same links before the jobs. Drops: packets "
            f"the links' queues dropped during the jobs ({QUEUE_BYTES // 2**20} MiB each, meant to hold every "
            "window in flight).",
        ],
        summary={"workers": WORKERS, "overrides": list(OVERRIDES)},
    )
