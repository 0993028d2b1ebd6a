"""Run directories -> one summary per run (RunSummary): its configuration, its logged scores and
figures, its time, compute and lost workers, and the real-data floor it recorded.
experiments/records.py keeps the summaries as files; experiments/result_tables.py turns them into
tables, verdicts and files."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf.errors import OmegaConfBaseException

from mdgan_dist import config
from mdgan_dist.errors import ConfigError
from mdgan_dist.experiments.rundir import is_finished, read_grid_info, read_metrics
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
# With a moving average of G, the raw G's final scores: what the average changed.
RAW_SHOWN = ("classifier_score", "frechet_distance", "salt")
LAST = 3  # the last evaluations a run's summary averages: one evaluation alone is noisy


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
    watched: bool = False  # MD-GAN with the outlier watch on (mdgan.outlier_iterations)
    liars: bool = False  # some workers lied (fault.byzantine_worker)
    first_named: int | None = None  # the first logged iteration whose workers_named is above 0

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
    def detection_delay(self) -> int | str | None:
        """With the watch on and liars: the iterations it took to name a worker (the first logged
        iteration with one named, so to within log.every), or "none"."""
        if not (self.watched and self.liars):
            return None
        return "none" if self.first_named is None else self.first_named

    @property
    def false_alarm(self) -> str | None:
        """With the watch on and no liar: whether it named a worker all the same."""
        if not self.watched or self.liars:
            return None
        return "no" if self.first_named is None else "yes"

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
    named = [r["iteration"] for r in training if r.get("workers_named", 0) > 0]
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
        watched=cfg.algorithm == "mdgan" and cfg.mdgan.outlier_iterations > 0,
        liars=bool(cfg.fault.byzantine_worker),
        first_named=min(named, default=None),
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


def summarize_under(root: Path) -> list[RunSummary]:
    """Every run directory under root (root itself included): the folders holding a config.yaml."""
    run_dirs = sorted(path.parent for path in root.rglob("config.yaml")) if root.is_dir() else []
    return [summarize(run_dir) for run_dir in run_dirs]
