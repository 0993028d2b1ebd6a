"""Run summaries -> results.md and results.csv, one row per run, and one row per real-data floor
the runs recorded (what real images score, for comparison). Runs of one configuration with several
seeds also get a row over their seeds (seeds.csv: mean, standard deviation and 95 % interval of
every summary column), their mean curves (curves.csv), and the verdicts asked for (verdicts.csv:
experiments/stats.py's decision rule)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdgan_dist.errors import ConfigError
from mdgan_dist.experiments.formatting import duration, number
from mdgan_dist.experiments.results import FIGURES, LAST, RAW_SHOWN, SCORES, RunSummary
from mdgan_dist.experiments.stats import DECISION_RULE, Comparison, Estimate, compare, estimate
from mdgan_dist.experiments.tables import Column, markdown_table
from mdgan_dist.run_logging import RAW_PREFIX

ALWAYS_SHOWN = ("classifier_score", "frechet_distance")  # the others only when a run logged them
# The columns that summarise a run, and so are averaged over its seeds: its scores and, for a cost
# estimate, its seconds per iteration.
SUMMARY_SUFFIXES = ("_final", "_best", f"_last{LAST}", "iteration_seconds")


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
    if any(run.watched for run in runs):  # the outlier watch: on liars, its delay; on honest runs, its false alarms
        base.append(Column("detection_delay", "detection delay (iterations)", lambda r: r.detection_delay))
        base.append(Column("false_alarm", "false alarm", lambda r: r.false_alarm))
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


def configurations(runs: list[RunSummary]) -> dict[str, list[RunSummary]]:
    """Every configuration and its runs (one per seed), in the table's order."""
    found: dict[str, list[RunSummary]] = {}
    for run in runs:
        found.setdefault(run.group, []).append(run)
    return found


def groups(runs: list[RunSummary]) -> dict[str, list[RunSummary]]:
    """Every configuration and its finished runs, what the tables over the seeds are made of: a run
    that stopped early has no final scores, so only the per-run table shows it (`unfinished_note`)."""
    return configurations([run for run in runs if run.finished])


def unfinished_note(runs: list[RunSummary]) -> list[str]:
    """The lines saying which runs the tables over configurations leave out, and where they stopped."""
    stopped = [f"{run.name} (iteration {run.iterations or 0})" for run in runs if not run.finished]
    return ["", f"Unfinished, so in no table over the seeds: {', '.join(stopped)}."] if stopped else []


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
    lines = markdown_table([c.title for c in table], rows + floor_rows) + unfinished_note(runs)
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
