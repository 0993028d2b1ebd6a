"""The grid in tensorboard's HParams view: one entry per run, its configuration as hyperparameters
and its summary scores as metrics, so runs can be filtered, sorted and compared there."""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from mdgan_dist.experiments.result_tables import ALWAYS_SHOWN
from mdgan_dist.experiments.results import LAST, RunSummary

NONE = "-"  # HParams needs one type per hyperparameter: "N" of the standalone GAN reads "-"


def hyperparameters(run: RunSummary) -> dict[str, str | int]:
    return {
        "configuration": run.group,
        "method": run.method,
        "N": NONE if run.workers is None else str(run.workers),
        "k": NONE if run.k is None else str(run.k),
        "b": run.batch_size,
        "seed": run.seed,
    }


def metrics(run: RunSummary) -> dict[str, float]:
    """The final value and the mean of the last LAST evaluations of each always-shown score it logged."""
    found: dict[str, float] = {}
    for score in ALWAYS_SHOWN:
        final, last = run.final(score), run.last(score)
        if final is not None and last is not None:
            found[f"hparams/{score}_final"] = final
            found[f"hparams/{score}_last{LAST}"] = last
    return found


def write_hparams(runs: list[RunSummary], board: Path) -> None:
    """One HParams entry per run under board/<run name>."""
    with SummaryWriter(log_dir=str(board)) as writer:
        for run in runs:
            writer.add_hparams(hyperparameters(run), metrics(run), run_name=run.name)
