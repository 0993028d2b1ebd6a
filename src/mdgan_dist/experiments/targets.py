"""What it took to reach a finished generator: quality targets (`mdgan-experiment results
--target`), the first evaluation at which a run meets them all, and its cost until then.

A target is a score and a bound, absolute or a multiple of the real-data floor's mean:
"classifier_score>=9" or "frechet_distance<=2xfloor". A run reaches the targets at the first
evaluation where every one holds; what it took: that iteration, the compute its workers spent
until then (their compute_cpu_seconds, summed over the workers, in proportion to the iterations:
every iteration costs a worker the same), and the bytes its server moved until then
(server_bytes_total at that iteration).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from pathlib import Path

from mdgan_dist.errors import ConfigError
from mdgan_dist.experiments.formatting import number
from mdgan_dist.experiments.result_tables import groups, interval, write_csv
from mdgan_dist.experiments.results import SCORES, RunSummary
from mdgan_dist.experiments.stats import estimate
from mdgan_dist.experiments.tables import markdown_table

_PATTERN = re.compile(r"^(?P<score>\w+)(?P<sign>>=|<=)(?P<bound>[0-9.eE+-]+)(?P<floor>xfloor)?$")


@dataclass(frozen=True)
class Target:
    score: str
    bound: float  # the bound, or its multiple of the floor
    of_floor: bool  # bound x the real-data floor's mean of the score

    def __str__(self) -> str:
        sign = ">=" if SCORES[self.score][1] else "<="
        return f"{self.score}{sign}{self.bound:g}{'xfloor' if self.of_floor else ''}"

    def limit(self, run: RunSummary) -> float | None:
        """The bound in the score's units for this run; None when it needs a floor the run lacks."""
        if not self.of_floor:
            return self.bound
        if run.floor is None or self.score not in run.floor[2]:
            return None
        return self.bound * run.floor[2][self.score]["mean"]

    def met(self, run: RunSummary, value: float) -> bool:
        limit = self.limit(run)
        compare = operator.ge if SCORES[self.score][1] else operator.le
        return limit is not None and compare(value, limit)


def parse_target(text: str) -> Target:
    """SCORE>=BOUND for a score where higher is better, SCORE<=BOUND where lower is; BOUND may end
    in xfloor: a multiple of what real images score."""
    found = _PATTERN.match(text.replace(" ", ""))
    if found is None or found["score"] not in SCORES:
        raise ConfigError(
            f"--target {text!r}: expected SCORE>=BOUND or SCORE<=BOUND, BOUND a number or a multiple of the "
            f"real-data floor (2xfloor), SCORE one of {', '.join(SCORES)}"
        )
    score, sign = found["score"], found["sign"]
    if (sign == ">=") != SCORES[score][1]:
        better = "higher" if SCORES[score][1] else "lower"
        right = ">=" if SCORES[score][1] else "<="
        raise ConfigError(f"--target {text!r}: {better} {score} is better, so its target reads {score}{right}BOUND")
    return Target(score, float(found["bound"]), found["floor"] is not None)


@dataclass(frozen=True)
class Reached:
    """Where a run first met every target, and what it had cost by then."""

    iteration: int
    worker_cpu_seconds: float | None  # None: the run recorded no worker compute
    server_bytes: int | None  # None: the run logged no byte total (the standalone GAN sends nothing: 0)


def reached(run: RunSummary, targets: list[Target]) -> Reached | None:
    """The first evaluation at which every target holds; None if none does."""
    curves = [dict(run.curves.get(target.score, [])) for target in targets]
    for iteration in sorted(set.intersection(*(set(curve) for curve in curves))):
        if all(target.met(run, curve[iteration]) for target, curve in zip(targets, curves, strict=True)):
            cpu = None
            if run.worker_cpu_seconds is not None and run.iterations:
                cpu = run.worker_cpu_seconds * iteration / run.iterations
            server_bytes = 0 if run.method == "standalone" else run.bytes_total.get(iteration)
            return Reached(iteration, cpu, server_bytes)
    return None


def finished_table(runs: list[RunSummary], targets: list[Target]) -> list[str]:
    """Per configuration: how many runs reached the targets, and over those the iterations, worker
    compute and server bytes it took (mean ± sd [95 % interval])."""
    titles = ["configuration", "reached", "iterations", "worker compute (CPU s)", "server bytes (MB)"]
    rows = []
    for group, members in groups(runs).items():
        found = [hit for run in members if (hit := reached(run, targets)) is not None]
        cells = [group, f"{len(found)} of {len(members)}"]
        for values in (
            [hit.iteration for hit in found],
            [hit.worker_cpu_seconds for hit in found if hit.worker_cpu_seconds is not None],
            [hit.server_bytes / 1e6 for hit in found if hit.server_bytes is not None],
        ):
            cells.append(interval(estimate(values)) if values else "not reached")
        rows.append(cells)
    return markdown_table(titles, rows)


def finished_rows(runs: list[RunSummary], targets: list[Target]) -> list[list[object]]:
    """finished.csv: one row per run, for the tables that are cut from it."""
    rows: list[list[object]] = []
    for run in runs:
        hit = reached(run, targets)
        rows.append(
            [
                run.name,
                run.group,
                run.seed,
                "" if hit is None else hit.iteration,
                "" if hit is None or hit.worker_cpu_seconds is None else hit.worker_cpu_seconds,
                "" if hit is None or hit.server_bytes is None else hit.server_bytes,
                run.worker_cpu_seconds if run.worker_cpu_seconds is not None else "",
                run.iterations or "",
            ]
        )
    return rows


FINISHED_HEADER = [
    "configuration",
    "group",
    "seed",
    "reached_iteration",
    "reached_worker_cpu_seconds",
    "reached_server_bytes",
    "run_worker_cpu_seconds",
    "run_iterations",
]


def sections(runs: list[RunSummary], targets: list[Target]) -> str:
    """The markdown results.md adds after its tables: the runs' time to the targets, if any were
    given, and the classes' final shares, if the runs logged them."""
    lines = []
    if targets:
        what = " and ".join(str(target) for target in targets)
        lines += ["", f"To a finished generator ({what}; over the runs that reached it):", ""]
        lines += finished_table(runs, targets)
    shares = class_share_table(runs)
    if shares:
        lines += ["", "Each class's final share of the samples, the mean over the runs:", "", *shares]
    return "\n".join(lines) + "\n" if lines else ""


def write_finished(runs: list[RunSummary], targets: list[Target], out: Path) -> list[Path]:
    """finished.csv, one row per run, when targets were given."""
    if not targets:
        return []
    return [write_csv(out / "finished.csv", FINISHED_HEADER, finished_rows(runs, targets))]


def share_names(runs: list[RunSummary]) -> list[str]:
    """The class_share/<c> scores the runs logged, in class order."""
    return sorted(
        {name for run in runs for name in run.curves if name.startswith("class_share/")},
        key=lambda name: int(name.split("/")[1]),
    )


def write_class_shares(runs: list[RunSummary], out: Path) -> list[Path]:
    """class_shares.csv: each run's final share of every class, the rows the share table is cut from."""
    names = share_names(runs)
    if not names:
        return []
    header = ["configuration", "group", "seed", *(name.replace("/", "_") for name in names)]
    rows = [[run.name, run.group, run.seed, *("" if (v := run.final(n)) is None else v for n in names)] for run in runs]
    return [write_csv(out / "class_shares.csv", header, rows)]


def class_share_table(runs: list[RunSummary]) -> list[str]:
    """Per configuration, each class's final share of the samples, the mean over its runs, and
    the smallest share any run left a class."""
    names = share_names(runs)
    if not names:
        return []
    rows = []
    for group, members in groups(runs).items():
        # a run never scored has no share: it counts in no column
        finals = [[run.final(name) for name in names] for run in members]
        finals = [row for row in finals if any(v is not None for v in row)]
        if not finals:
            continue
        columns = [[v for v in column if v is not None] for column in zip(*finals, strict=True)]
        means = [sum(column) / len(column) if column else None for column in columns]
        lowest = min(v for column in columns for v in column)
        rows.append(
            [group, str(len(finals)), *("" if mean is None else number(mean) for mean in means), number(lowest)]
        )
    titles = ["configuration", "runs", *(f"class {name.split('/')[1]}" for name in names), "lowest in any run"]
    return markdown_table(titles, rows)
