"""Score curves of a grid: classifier score and Frechet distance (log axis) against iterations, one
line per configuration, its mean over seeds with a band for the 95 % interval of that mean, and a
grey band for what real images score; as scores.png and as an image in a tensorboard event file."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

from mdgan_dist.experiments.result_tables import ALWAYS_SHOWN, configurations, floors, seed_curves
from mdgan_dist.experiments.results import SCORES, RunSummary

# The method shows in the line style, the configuration in the colour.
LINE_STYLES = {"standalone": ":", "flgan": "--", "mdgan": "-"}
LOG_SCALE = {"frechet_distance"}  # spans two orders of magnitude over a run


def score_figure(runs: list[RunSummary]) -> Figure:
    figure = Figure(figsize=(14, 5), layout="constrained")
    colours = matplotlib.colormaps["tab10"]
    for axes, score in zip(figure.subplots(1, len(ALWAYS_SHOWN)), ALWAYS_SHOWN, strict=True):
        title, higher_is_better = SCORES[score]
        for index, (group, members) in enumerate(configurations(runs).items()):
            # Seeds are averaged over the finished runs, as in the tables; a configuration with
            # none finished yet shows its runs' progress.
            finished = [run for run in members if run.finished]
            _plot_group(axes, group, finished or members, score, colours(index % colours.N))
        for name, floor in floors(runs):
            if score in floor:
                mean, sd = floor[score]["mean"], floor[score]["sd"]
                axes.axhline(mean, color="grey", linewidth=1, label=name)
                axes.axhspan(mean - sd, mean + sd, color="grey", alpha=0.2)
        if not axes.lines:
            axes.text(0.5, 0.5, "no scores logged", ha="center", va="center", transform=axes.transAxes)
        elif score in LOG_SCALE:
            axes.set_yscale("log")
        axes.set(xlabel="iteration", title=f"{title} ({'higher' if higher_is_better else 'lower'} is better)")
        axes.grid(alpha=0.3, which="both")
    labelled: dict[str, Artist] = {}  # one legend entry per label, whichever axes show it
    for axes in figure.axes:
        handles, labels = axes.get_legend_handles_labels()
        labelled.update(zip(labels, handles, strict=True))
    if labelled:
        figure.legend(labelled.values(), labelled.keys(), loc="outside right upper", fontsize="small")
    return figure


def _plot_group(axes: Axes, group: str, members: list[RunSummary], score: str, colour: object) -> None:
    """One run as it is; several seeds as their mean, with the 95 % interval of the mean as a band."""
    style = LINE_STYLES.get(members[0].method, "-")
    if len(members) == 1:
        (run,) = members
        points = run.curves.get(score)
        if points:
            steps, values = zip(*points, strict=True)
            label = run.name if run.finished else f"{run.name} (unfinished)"
            axes.plot(steps, values, style, marker=".", color=colour, label=label)
        return
    curve = seed_curves(members, score)
    if not curve:
        return
    iterations = [iteration for iteration, _ in curve]
    means = [value.mean for _, value in curve]
    label = f"{group} ({len(members)} seeds{'' if all(run.finished for run in members) else ', unfinished'})"
    axes.plot(iterations, means, style, marker=".", color=colour, label=label)
    lows = [value.low if value.low is not None else value.mean for _, value in curve]
    highs = [value.high if value.high is not None else value.mean for _, value in curve]
    axes.fill_between(iterations, lows, highs, color=colour, alpha=0.15, linewidth=0)


def write_plots(runs: list[RunSummary], out: Path) -> Path:
    """scores.png, and the same figure under out/tensorboard (tag "scores")."""
    figure = score_figure(runs)
    png = out / "scores.png"
    figure.savefig(png, dpi=120)
    with SummaryWriter(log_dir=str(out / "tensorboard")) as writer:
        writer.add_figure("scores", figure, close=False)
    return png
