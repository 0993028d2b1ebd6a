"""Score curves of a grid: classifier score and Frechet distance against iterations, one line per
configuration and a grey band for what real images score, as scores.png and as an image in a
tensorboard event file."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI

from matplotlib.artist import Artist
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

from mdgan_dist.experiments.results import ALWAYS_SHOWN, SCORES, RunSummary, floors

# The method shows in the line style, the configuration in the colour, which its seeds share.
LINE_STYLES = {"standalone": ":", "flgan": "--", "mdgan": "-"}


def score_figure(runs: list[RunSummary]) -> Figure:
    figure = Figure(figsize=(14, 5), layout="constrained")
    colours = matplotlib.colormaps["tab10"]
    groups = list(dict.fromkeys(run.group for run in runs))
    for axes, score in zip(figure.subplots(1, len(ALWAYS_SHOWN)), ALWAYS_SHOWN, strict=True):
        title, higher_is_better = SCORES[score]
        for run in runs:
            points = run.curves.get(score)
            if points:
                label = run.name if run.finished else f"{run.name} (unfinished)"
                iterations, values = zip(*points, strict=True)
                style = LINE_STYLES.get(run.method, "-")
                axes.plot(
                    iterations,
                    values,
                    style,
                    marker=".",
                    color=colours(groups.index(run.group) % colours.N),
                    label=label,
                )
        for name, floor in floors(runs):
            if score in floor:
                mean, sd = floor[score]["mean"], floor[score]["sd"]
                axes.axhline(mean, color="grey", linewidth=1, label=name)
                axes.axhspan(mean - sd, mean + sd, color="grey", alpha=0.2)
        if not axes.lines:
            axes.text(0.5, 0.5, "no scores logged", ha="center", va="center", transform=axes.transAxes)
        axes.set(xlabel="iteration", title=f"{title} ({'higher' if higher_is_better else 'lower'} is better)")
        axes.grid(alpha=0.3)
    labelled: dict[str, Artist] = {}  # one legend entry per label, whichever axes show it
    for axes in figure.axes:
        handles, labels = axes.get_legend_handles_labels()
        labelled.update(zip(labels, handles, strict=True))
    if labelled:
        figure.legend(labelled.values(), labelled.keys(), loc="outside right upper", fontsize="small")
    return figure


def write_plots(runs: list[RunSummary], out: Path) -> Path:
    """scores.png, and the same figure under out/tensorboard (tag "scores")."""
    figure = score_figure(runs)
    png = out / "scores.png"
    figure.savefig(png, dpi=120)
    with SummaryWriter(log_dir=str(out / "tensorboard")) as writer:
        writer.add_figure("scores", figure, close=False)
    return png
