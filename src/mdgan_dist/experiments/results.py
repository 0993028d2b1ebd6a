"""Run directories -> one summary per run -> results.md and results.csv, one row per run, and one
row per real-data floor the runs recorded (what real images score, for comparison). Runs of one
configuration with several seeds also get a row over their seeds (seeds.csv: mean, standard
deviation and 95 % interval of every summary column), their mean curves (curves.csv), and the
verdicts asked for (verdicts.csv: experiments/stats.py's decision rule)."""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf.errors import OmegaConfBaseException

from mdgan_dist import config
from mdgan_dist.errors import ConfigError
from mdgan_dist.experiments.formatting import duration, number
from mdgan_dist.experiments.rundir import is_finished, read_grid_info, read_metrics
from mdgan_dist.experiments.stats import DECISION_RULE, Comparison, Estimate, compare, estimate
from mdgan_dist.experiments.tables import Column, markdown_table
from mdgan_dist.metrics.scores import CLASS_SHARE
from mdgan_dist.run_logging import RAW_PREFIX, REAL_FLOOR_FILE, WORKERS_FILE

METHODS = ("standalone", "flgan", "mdgan")  # the table's order: the baselines first
# The keys of score records: (their name in the table and the plot, whether higher is better).
SCORES = {
    "classifier_score": ("classifier score", True),
    "frechet_distance": ("Frechet distance", False),
    "is": ("IS", True),
    "fid": ("FID", False),
}
# Figures of the final samples only: their best value over a run says little.
FIGURES = {
    "salt": ("salt", False),
    "class_share_min": ("rarest class share", True),
    "class_entropy": ("class entropy (bits)", True),
}
ALWAYS_SHOWN = ("classifier_score", "frechet_distance")  # the others only when a run logged them
# With a moving average of G, the raw G's final scores: what the average changed.
RAW_SHOWN = ("classifier_score", "frechet_distance", "salt")
LAST = 3  # the last evaluations a run's summary averages: one evaluation alone is noisy
# The columns that summarise a run, and so are averaged over its seeds: its scores and, for a cost
# estimate, its seconds per iteration.
SUMMARY_SUFFIXES = ("_final", "_best", f"_last{LAST}", "iteration_seconds")


class NoRunsError(Exception):
    """The folder holds no run directory (no config.yaml under it)."""


@dataclass(frozen=True)
class RunSummary:
    name: str
    group: str  # the configuration without its seed
    method: str
    workers: int | None  # None: standalone, or a run started by hand whose metrics do not tell N
    k: int | None  # mdgan only
    batch_size: int
    seed: int
    finished: bool
    iterations: int | None  # the last iteration logged
    wall_seconds: float | None  # elapsed_seconds of the last record
    iteration_seconds: float | None  # the median of the logged iterations' seconds (scoring and start-up left out)
    curves: dict[str, list[tuple[int, float]]]  # score, figure or raw_ score -> (iteration, value), in logged order
    floor: tuple[str, int, dict[str, dict[str, float]]] | None  # (dataset, samples, real_floor.json), if scored
    lost: int | None = None  # MD-GAN with fault.tolerate_worker_loss: the workers dropped during the run
    worker_cpu_seconds: float | None = None  # the workers' training compute over the run (stats files), summed
    bytes_total: dict[int, int] = field(default_factory=dict)  # iteration -> server_bytes_total logged there

    def best(self, score: str) -> tuple[float | None, int | None]:
        """The best value and the iteration where it was first reached; Nones without scores."""
        points = self.curves.get(score)
        if not points:
            return None, None
        pick = max if SCORES[score][1] else min
        iteration, value = pick(points, key=lambda point: point[1])
        return value, iteration

    def final(self, score: str) -> float | None:
        """The last logged value of a score, a figure or a raw_ score."""
        points = self.curves.get(score)
        return points[-1][1] if points else None

    def last(self, score: str) -> float | None:
        """The mean of the last LAST values of a score (of all of them in a run scored fewer times)."""
        points = self.curves.get(score)
        return sum(value for _, value in points[-LAST:]) / len(points[-LAST:]) if points else None

    @property
    def sort_key(self) -> tuple:
        method = METHODS.index(self.method) if self.method in METHODS else len(METHODS)
        return method, self.workers or 0, self.k or 0, self.batch_size, self.name


def summarize(run_dir: Path) -> RunSummary:
    try:
        cfg = config.load(run_dir / "config.yaml")
    except OmegaConfBaseException as error:
        raise ConfigError(f"{run_dir / 'config.yaml'} does not fit the config schema: {error}") from error
    records = read_metrics(run_dir)
    grid_info = read_grid_info(run_dir)
    workers = grid_info.get("workers")
    training = [r for r in records if "d_loss_per_worker" in r]
    seconds = [r["iteration_seconds"] for r in records if "iteration_seconds" in r]
    if workers is None and cfg.algorithm != "standalone" and training:
        workers = len(training[0]["d_loss_per_worker"])  # a run started by hand: its first logged worker count
    k = None
    if cfg.algorithm == "mdgan":
        k = cfg.mdgan.k if workers is None else config.resolved_k(cfg.mdgan, workers)
    elapsed = [r["elapsed_seconds"] for r in records if "elapsed_seconds" in r]
    shares = sorted({name for r in records for name in r if name.startswith(CLASS_SHARE)})
    logged = [*SCORES, *FIGURES, *(RAW_PREFIX + name for name in RAW_SHOWN), *shares]
    curves = {s: [(r["iteration"], float(r[s])) for r in records if r.get(s) is not None] for s in logged}
    floor_file = run_dir / REAL_FLOOR_FILE
    floor = (cfg.data.name, cfg.eval.num_samples, json.loads(floor_file.read_text())) if floor_file.exists() else None
    iterations = max((r["iteration"] for r in records), default=None)
    return RunSummary(
        name=grid_info.get("name", run_dir.name),
        group=grid_info.get("group", grid_info.get("name", run_dir.name)),
        method=cfg.algorithm,
        workers=workers,
        k=k,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        finished=is_finished(run_dir),
        iterations=iterations,
        wall_seconds=elapsed[-1] if elapsed else None,
        iteration_seconds=statistics.median(seconds) if seconds else None,
        curves={score: points for score, points in curves.items() if points},
        floor=floor,
        lost=_workers_lost(run_dir, cfg.mdgan.workers_per_rank),
        worker_cpu_seconds=_worker_cpu_seconds(run_dir, iterations, every_iteration=cfg.mdgan.quorum is None),
        bytes_total={r["iteration"]: r["server_bytes_total"] for r in training if "server_bytes_total" in r},
    )


def _worker_cpu_seconds(run_dir: Path, iterations: int | None, every_iteration: bool) -> float | None:
    """The compute_cpu_seconds of every process that trains on data (workers, the standalone
    GAN), summed over the run's `iterations`; None when no stats file records it (a run that did
    not finish). A resumed run's processes clock only the iterations_trained since they started:
    their seconds are scaled from those to the whole run. Not under mdgan.quorum (every_iteration
    false), where a worker also skips the iterations it was late for."""
    seconds = []
    for path in run_dir.glob("stats_rank*.json"):
        stats = json.loads(path.read_text())
        if stats.get("compute_cpu_seconds") is None:
            continue
        trained = stats.get("iterations_trained")
        scale = iterations / trained if every_iteration and trained and iterations else 1.0
        seconds.append(stats["compute_cpu_seconds"] * scale)
    return sum(seconds) if seconds else None


def _workers_lost(run_dir: Path, per_rank: int) -> int | None:
    """The workers an MD-GAN run dropped (each dropped process held per_rank of them); None without the file."""
    path = run_dir / WORKERS_FILE
    return len(json.loads(path.read_text())["dropped"]) * per_rank if path.exists() else None


def collect(root: Path) -> list[RunSummary]:
    """Every run directory under root (root itself included), in the table's order."""
    run_dirs = sorted(path.parent for path in root.rglob("config.yaml")) if root.is_dir() else []
    if not run_dirs:
        raise NoRunsError(f"no run directories under {root}: expected folders holding config.yaml and metrics.jsonl")
    return sorted((summarize(run_dir) for run_dir in run_dirs), key=lambda run: run.sort_key)


def columns(runs: list[RunSummary]) -> list[Column[RunSummary]]:
    def logged(name: str) -> bool:
        return any(name in run.curves for run in runs)

    shown = [s for s in SCORES if s in ALWAYS_SHOWN or logged(s)]
    figures = [_final_column(name, f"final {title}") for name, (title, _) in FIGURES.items() if logged(name)]
    raw = [
        _final_column(RAW_PREFIX + name, f"final {_title(name)}, raw G")
        for name in RAW_SHOWN
        if logged(RAW_PREFIX + name)
    ]
    base: list[Column[RunSummary]] = [
        Column("configuration", "configuration", lambda r: r.name),
        Column("method", "method", lambda r: r.method),
        Column("N", "N", lambda r: r.workers),
        Column("k", "k", lambda r: r.k),
        Column("b", "b", lambda r: r.batch_size),
        Column("status", "status", lambda r: "finished" if r.finished else "unfinished"),
        Column("iterations", "iterations", lambda r: r.iterations),
        Column("wall_time_s", "wall time", lambda r: r.wall_seconds, duration),
        Column("iteration_seconds", "s per iteration", lambda r: r.iteration_seconds, lambda value: f"{value:.3f}"),
    ]
    if any(run.lost for run in runs):
        base.append(Column("workers_lost", "workers lost", lambda r: r.lost))
    return base + [column for score in shown for column in _score_columns(score)] + figures + raw


def _title(name: str) -> str:
    return {**SCORES, **FIGURES}[name][0]


def _final_column(name: str, title: str) -> Column[RunSummary]:
    return Column(f"{name}_final", title, lambda run: run.final(name), number)


def _score_columns(score: str) -> list[Column[RunSummary]]:
    title, higher_is_better = SCORES[score]
    best = "best" if higher_is_better else "best (lowest)"
    return [
        Column(f"{score}_best", f"{best} {title}", lambda run: run.best(score)[0], number),
        Column(f"{score}_best_iteration", "at iteration", lambda run: run.best(score)[1]),
        Column(f"{score}_final", f"final {title}", lambda run: run.final(score), number),
        Column(f"{score}_last{LAST}", f"{title}, mean of the last {LAST}", lambda run: run.last(score), number),
    ]


def floors(runs: list[RunSummary]) -> list[tuple[str, dict[str, dict[str, float]]]]:
    """One (row name, floor) per dataset and sample count the runs were scored with."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for run in runs:
        if run.floor is not None:
            dataset, samples, floor = run.floor
            found.setdefault(f"real data ({dataset}, {samples} samples)", floor)
    return list(found.items())


def _floor_cells(
    table: list[Column[RunSummary]], floor: dict[str, dict[str, float]], name: str
) -> list[tuple[str, Any]]:
    """A floor row: its name, and "mean ± sd" (CSV: the mean) under each final score it has."""
    cells: list[tuple[str, Any]] = []
    for column in table:
        score = column.key.removesuffix("_final")
        if column.key == "configuration":
            cells.append((name, name))
        elif column.key.endswith("_final") and score in floor:
            mean, sd = floor[score]["mean"], floor[score]["sd"]
            cells.append((f"{number(mean)} ± {number(sd)}", mean))
        else:
            cells.append(("", ""))
    return cells


def groups(runs: list[RunSummary]) -> dict[str, list[RunSummary]]:
    """Every configuration and its runs (one per seed), in the table's order."""
    found: dict[str, list[RunSummary]] = {}
    for run in runs:
        found.setdefault(run.group, []).append(run)
    return found


def seed_groups(runs: list[RunSummary]) -> dict[str, list[RunSummary]]:
    """The configurations run with more than one seed, and their runs, in the table's order."""
    return {group: members for group, members in groups(runs).items() if len(members) > 1}


def interval(value: Estimate) -> str:
    """mean ± sd [95 % interval]."""
    bounds = "" if value.low is None or value.high is None else f" [{number(value.low)}, {number(value.high)}]"
    return f"{number(value.mean)} ± {number(value.sd)}{bounds}"


def _seed_rows(runs: list[RunSummary]) -> tuple[list[str], list[tuple[str, int, list[Estimate | None]]]]:
    """The table over seeds: its titles and, per configuration, (name, runs, an estimate per summary column)."""
    summaries = [column for column in columns(runs) if column.key.endswith(SUMMARY_SUFFIXES)]
    titles = ["configuration", "runs", *(column.title for column in summaries)]
    rows = []
    for group, members in seed_groups(runs).items():
        cells: list[Estimate | None] = []
        for column in summaries:
            values = [value for run in members if (value := column.value(run)) is not None]
            cells.append(estimate(values) if values else None)
        rows.append((group, len(members), cells))
    return titles, rows


def seed_curves(members: list[RunSummary], score: str) -> list[tuple[int, Estimate]]:
    """A configuration's curve over its seeds: an estimate at each iteration that every run scored."""
    by_run = [dict(run.curves.get(score, [])) for run in members]
    shared = sorted(set.intersection(*(set(points) for points in by_run))) if by_run else []
    return [(iteration, estimate([points[iteration] for points in by_run])) for iteration in shared]


@dataclass(frozen=True)
class Verdict:
    better: str  # the configuration claimed better
    than: str
    score: str
    a: Estimate
    b: Estimate
    comparison: Comparison


def verdicts(runs: list[RunSummary], claims: list[tuple[str, str]]) -> list[Verdict]:
    """Each claim "A is better than B", judged on every always-shown score's per-seed mean of the
    last LAST evaluations (experiments/stats.py's rule)."""
    found = groups(runs)
    judged = []
    for better, than in claims:
        for name in (better, than):
            if name not in found:
                raise ConfigError(f"--compare names {name!r}, which is none of the configurations: {', '.join(found)}")
        for score in ALWAYS_SHOWN:
            a = [value for run in found[better] if (value := run.last(score)) is not None]
            b = [value for run in found[than] if (value := run.last(score)) is not None]
            if min(len(a), len(b)) < 2:
                raise ConfigError(
                    f"--compare {better} {than}: {SCORES[score][0]} needs at least 2 scored seeds on each side, "
                    f"got {len(a)} and {len(b)}"
                )
            comparison = compare(a, b, higher_is_better=SCORES[score][1])
            judged.append(Verdict(better, than, score, estimate(a), estimate(b), comparison))
    return judged


def _verdict_table(judged: list[Verdict]) -> list[str]:
    """One row per claim: for each score, A - B [95 % interval], its p-value, and the verdict."""
    claims = list(dict.fromkeys((v.better, v.than) for v in judged))
    titles = ["claim"]
    for score in ALWAYS_SHOWN:
        titles += [f"{SCORES[score][0]}: A - B [95 % interval], p", "verdict"]
    rows = []
    for better, than in claims:
        cells = [f"{better} better than {than}"]
        for verdict in (v for v in judged if (v.better, v.than) == (better, than)):
            c = verdict.comparison
            p_value = "< 0.001" if c.p_value < 0.001 else f"{c.p_value:.3f}"
            cells += [f"{number(c.difference)} [{number(c.low)}, {number(c.high)}], p {p_value}", f"**{c.verdict}**"]
        rows.append(cells)
    return markdown_table(titles, rows)


def markdown(runs: list[RunSummary], claims: list[tuple[str, str]] | None = None) -> str:
    table = columns(runs)
    floor_rows = [[text for text, _ in _floor_cells(table, floor, name)] for name, floor in floors(runs)]
    rows = [[c.cell(run) for c in table] for run in runs]
    lines = markdown_table([c.title for c in table], rows + floor_rows)
    titles, seed_rows = _seed_rows(runs)
    if seed_rows:
        # The floor again, under the same final columns, after a blank "runs" cell.
        summaries = [i for i, column in enumerate(table) if column.key.endswith(SUMMARY_SUFFIXES)]
        again = [[row[0], "", *(row[i] for i in summaries)] for row in floor_rows]
        cells = [
            [group, str(count), *("" if e is None else interval(e) for e in found)] for group, count, found in seed_rows
        ]
        lines += ["", "Over the seeds: mean ± standard deviation [95 % interval of the mean]:", ""]
        lines += markdown_table(titles, cells + again)
    judged = verdicts(runs, claims or [])
    if judged:
        lines += ["", f"Verdicts ({DECISION_RULE}):", ""]
        lines += _verdict_table(judged)
    return "\n".join(lines) + "\n"


def write_tables(
    runs: list[RunSummary], out: Path, claims: list[tuple[str, str]] | None = None, more: str = ""
) -> list[Path]:
    """results.md (with `more` markdown after its tables) and results.csv: the same rows; the CSV
    holds the raw numbers (seconds, full precision). With several seeds of a configuration,
    seeds.csv (mean, sd and 95 % interval of each summary column) and curves.csv (the same at each
    evaluation); with claims, verdicts.csv."""
    table = columns(runs)
    md_path, csv_path = out / "results.md", out / "results.csv"
    md_path.write_text(markdown(runs, claims) + more)
    run_rows = [["" if (v := c.value(run)) is None else v for c in table] for run in runs]
    floor_rows = [[value for _, value in _floor_cells(table, floor, name)] for name, floor in floors(runs)]
    written = [md_path, write_csv(csv_path, [c.key for c in table], run_rows + floor_rows)]
    _, seed_rows = _seed_rows(runs)
    if seed_rows:
        keys = [column.key for column in table if column.key.endswith(SUMMARY_SUFFIXES)]
        stats = ("mean", "sd", "low", "high")
        written.append(
            write_csv(
                out / "seeds.csv",
                ["configuration", "runs", *(f"{key}_{stat}" for key in keys for stat in stats)],
                [
                    [group, count, *(v for e in found for v in _estimate_values(e)[1:])]
                    for group, count, found in seed_rows
                ],
            )
        )
        curve_rows = [
            [group, score, iteration, *_estimate_values(value)]
            for group, members in seed_groups(runs).items()
            for score in SCORES
            for iteration, value in seed_curves(members, score)
        ]
        header = ["configuration", "score", "iteration", "runs", *stats]
        written.append(write_csv(out / "curves.csv", header, curve_rows))
    judged = verdicts(runs, claims or [])
    if judged:
        rows = [
            [v.better, v.than, v.score, v.a.mean, v.a.sd, v.b.mean, v.b.sd, v.comparison.difference,
             v.comparison.low, v.comparison.high, v.comparison.p_value, v.comparison.verdict]
            for v in judged
        ]  # fmt: skip
        header = ["better", "than", "score", "a_mean", "a_sd", "b_mean", "b_sd", "difference", "low", "high"]
        written.append(write_csv(out / "verdicts.csv", [*header, "p_value", "verdict"], rows))
    return written


def _estimate_values(value: Estimate | None) -> list[Any]:
    """runs, mean, sd, low, high; empty cells where there is nothing to estimate."""
    if value is None:
        return ["", "", "", "", ""]
    return [
        value.n,
        value.mean,
        value.sd,
        "" if value.low is None else value.low,
        "" if value.high is None else value.high,
    ]


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path
