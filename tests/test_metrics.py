"""Evaluation metrics: the classifier's accuracy, the score formulas against closed forms and
real/noise images, the trainer's API (check_evaluation, Evaluator), `mdgan-eval` end to end, and
the Inception path with randomly initialised weights. One mnist5k classifier, trained into a
temporary cache once per module, serves every test."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torchvision.utils import save_image

from mdgan_dist import config
from mdgan_dist.algorithms.components import make_generator
from mdgan_dist.config import Config
from mdgan_dist.data import open_dataset
from mdgan_dist.errors import ConfigError
from mdgan_dist.metrics import (
    Evaluator,
    check_evaluation,
    classifier_score,
    cli,
    evaluator,
    feature_statistics,
    frechet_distance,
)
from mdgan_dist.metrics.scores import class_coverage, salt
from mdgan_dist.metrics.store import StoredClassifier, load_classifier
from mdgan_dist.metrics.training import ensure_classifier, load_part
from mdgan_dist.models import build_generator
from mdgan_dist.seeding import seeded
from multiproc import TINY, metrics, train_job

CPU = torch.device("cpu")
SCORES = ("classifier_score", "frechet_distance")
FIGURES = ("salt", "class_share_min", "class_entropy", *(f"class_share/{c}" for c in range(10)))
NUM_SAMPLES = 200  # generated samples per score: enough for a finite 128-d covariance, and fast
# Whichever test runs first trains the evaluation classifier (the module fixture below) within its
# own timeout: minutes of CPU, which a loaded machine stretches past the default 300 s.
pytestmark = pytest.mark.timeout(900)


def make_config(classifier_dir: Path) -> Config:
    cfg = Config()
    cfg.eval.classifier_dir = str(classifier_dir)
    cfg.eval.num_samples = NUM_SAMPLES
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, StoredClassifier]:
    cfg = make_config(tmp_path_factory.mktemp("classifiers"))
    stored, was_trained = ensure_classifier(cfg, CPU)
    assert was_trained
    return cfg, stored


@pytest.fixture(scope="module")
def cfg(trained: tuple[Config, StoredClassifier]) -> Config:
    return trained[0]


@pytest.fixture(scope="module")
def scorer(cfg: Config) -> Evaluator:
    return Evaluator(cfg, CPU)


@pytest.fixture(scope="module")
def heldout() -> torch.Tensor:
    return load_part(open_dataset(Config().data, "heldout"))[0]


@pytest.fixture(scope="module")
def train_subset() -> torch.Tensor:
    """500 train images: real digits the held-out statistics were not computed from."""
    return load_part(open_dataset(Config().data, "train"), 500)[0]


def uniform_noise(count: int) -> torch.Tensor:
    return torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1


# The classifier and its cache.


@pytest.mark.slow
def test_classifier_reaches_96_percent_on_mnist5k_heldout(trained: tuple[Config, StoredClassifier]) -> None:
    cfg, stored = trained
    assert stored.heldout_accuracy >= 0.96
    assert stored.path.name == "mnist5k-1x28x28-v1.pt"
    reloaded = load_classifier(cfg, open_dataset(cfg.data, "heldout"))
    assert reloaded is not None and reloaded.heldout_accuracy == stored.heldout_accuracy
    # A second request finds the cached one instead of training again.
    again, was_trained = ensure_classifier(cfg, CPU)
    assert not was_trained and again.path == stored.path


@pytest.mark.slow
def test_a_classifier_for_another_dataset_is_refused(cfg: Config, trained: tuple[Config, StoredClassifier]) -> None:
    foreign = make_config(Path(cfg.eval.classifier_dir))
    foreign.data.name = "fashion_mnist"
    stored = trained[1]
    target = stored.path.with_name("fashion_mnist-1x28x28-v1.pt")
    target.write_bytes(stored.path.read_bytes())
    try:
        with pytest.raises(ConfigError, match="mdgan-eval train-classifier --force data=fashion_mnist"):
            load_classifier(foreign, open_dataset(cfg.data, "heldout"))
    finally:
        target.unlink()


# The formulas.


def test_classifier_score_bounds() -> None:
    classes = 10
    confident_and_balanced = torch.eye(classes).repeat(3, 1)
    assert classifier_score(confident_and_balanced) == pytest.approx(classes)
    all_the_same = torch.softmax(torch.randn(1, classes), 1).repeat(50, 1)
    assert classifier_score(all_the_same) == pytest.approx(1.0)


def test_frechet_distance_closed_forms() -> None:
    stream = torch.Generator().manual_seed(0)
    d = 16
    a = torch.randn(d, d, generator=stream, dtype=torch.float64)
    cov = a @ a.T + torch.eye(d, dtype=torch.float64)
    mu = torch.randn(d, generator=stream, dtype=torch.float64)
    assert abs(frechet_distance(mu, cov, mu, cov)) < 1e-8 * cov.trace().item()
    identity = torch.eye(d, dtype=torch.float64)
    shift = torch.randn(d, generator=stream, dtype=torch.float64)
    assert frechet_distance(torch.zeros(d), identity, shift, identity) == pytest.approx(shift.square().sum().item())
    # Isotropic covariances s1^2 I and s2^2 I: d (s1 - s2)^2.
    assert frechet_distance(mu, 4 * identity, mu, 9 * identity) == pytest.approx(d * (3 - 2) ** 2)


def test_salt_counts_isolated_bright_pixels_only() -> None:
    dark = -torch.ones(4, 1, 28, 28)
    assert salt(dark) == 0.0
    digit = dark.clone()
    digit[:, :, 6:22, 12:16] = 1.0  # a thick stroke: bright pixels, all with bright neighbours
    digit[:, :, 20, 8:20] = 0.8
    assert salt(digit) == 0.0
    # Specks on 5 % of the pixels, none next to another: on a grid of every other row and column.
    specks = dark.clone()
    rows, cols = torch.meshgrid(torch.arange(0, 28, 2), torch.arange(0, 28, 2), indexing="ij")
    chosen = torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(0))[: round(0.05 * 28 * 28)]
    specks[:, 0, rows.flatten()[chosen], cols.flatten()[chosen]] = 0.9
    assert salt(specks) == pytest.approx(0.05, abs=0.5 / (28 * 28))
    # A speck in the corner counts (no neighbours beyond the border); two side by side do not; a
    # pixel exactly at the midpoint is not bright.
    edge = dark.clone()
    edge[:, :, 0, 0] = 1.0
    edge[:, :, 10, 10:12] = 1.0
    edge[:, :, 20, 20] = 0.0
    assert salt(edge) == pytest.approx(1 / (28 * 28))
    # Specks added to a digit: only they count. Colour images: the mean over channels decides.
    assert salt(torch.maximum(digit, specks)) == pytest.approx(salt(specks), abs=2 / (28 * 28))
    colour = edge.repeat(1, 3, 1, 1)
    colour[:, 1:, 0, 0] = -1.0  # the corner speck: mean (1 - 1 - 1) / 3 < 0, not bright
    assert salt(colour) == 0.0


def shares(*values: float) -> dict[str, float]:
    return {f"class_share/{c}": value for c, value in enumerate(values)}


def test_class_coverage_of_hand_made_verdicts() -> None:
    balanced = torch.eye(10).repeat(5, 1)
    assert class_coverage(balanced) == pytest.approx(
        {"class_share_min": 0.1, "class_entropy": math.log2(10), **shares(*[0.1] * 10)}
    )
    collapsed = torch.zeros(50, 10)
    collapsed[:, 1] = 1.0
    assert class_coverage(collapsed) == {"class_share_min": 0.0, "class_entropy": 0.0, **shares(0, 1, *[0] * 8)}
    # Half 3s, half 7s (as probabilities, argmax decides): 1 bit, and eight classes missing.
    halves = torch.full((40, 10), 0.05)
    halves[:20, 3], halves[20:, 7] = 0.55, 0.55
    assert class_coverage(halves) == pytest.approx(
        {"class_share_min": 0.0, "class_entropy": 1.0, **shares(0, 0, 0, 0.5, 0, 0, 0, 0.5, 0, 0)}
    )
    skewed = torch.eye(10)[torch.tensor([0] * 20 + list(range(1, 10)) * 10)]  # 20 0s, 10 of the others
    assert class_coverage(skewed)["class_share_min"] == pytest.approx(10 / 110)
    assert class_coverage(skewed)["class_share/0"] == pytest.approx(20 / 110)


# The scores on real and noise images.


@pytest.mark.slow
def test_classifier_score_of_real_digits_and_of_noise(scorer: Evaluator, heldout: torch.Tensor) -> None:
    assert scorer.score(heldout)["classifier_score"] > 8
    assert scorer.score(uniform_noise(500))["classifier_score"] < 2


@pytest.mark.slow
def test_frechet_distance_real_noise_and_growing_noise(scorer: Evaluator, train_subset: torch.Tensor) -> None:
    real = scorer.score(train_subset)["frechet_distance"]
    noise = scorer.score(uniform_noise(500))["frechet_distance"]
    assert 0 <= real < 0.05 * noise
    stream = torch.Generator().manual_seed(2)
    distances = [real] + [
        scorer.score((train_subset + sigma * torch.randn(train_subset.shape, generator=stream)).clamp(-1, 1))[
            "frechet_distance"
        ]
        for sigma in (0.1, 0.25, 0.5, 1.0)
    ]
    assert distances == sorted(distances), distances


@pytest.mark.slow
def test_real_floor_is_what_real_digits_score_and_does_not_depend_on_the_seed(cfg: Config, scorer: Evaluator) -> None:
    floor = scorer.real_floor()
    assert set(floor) == {*SCORES, *FIGURES}
    assert floor["classifier_score"]["mean"] > 8.5
    assert 0 < floor["frechet_distance"]["mean"] < 30 and floor["frechet_distance"]["sd"] > 0
    assert floor["salt"]["mean"] < 1e-4
    assert floor["class_share_min"]["mean"] > 0.03 and floor["class_entropy"]["mean"] > 3.2
    other_seed = make_config(Path(cfg.eval.classifier_dir))
    other_seed.train.seed = 7
    assert Evaluator(other_seed, CPU).real_floor() == floor


@pytest.mark.slow
def test_real_statistics_of_disjoint_halves_are_close(scorer: Evaluator, heldout: torch.Tensor) -> None:
    _, features = scorer.classify(heldout)
    halves = [feature_statistics(features[start::2]) for start in (0, 1)]
    _, noise_features = scorer.classify(uniform_noise(250))
    between_halves = frechet_distance(*halves[0], *halves[1])
    to_noise = frechet_distance(*halves[0], *feature_statistics(noise_features))
    assert 0 <= between_halves < 0.05 * to_noise


# What the trainer calls.


@pytest.mark.slow
def test_check_evaluation_names_the_command_when_nothing_is_cached(tmp_path: Path, cfg: Config) -> None:
    empty = make_config(tmp_path / "empty")
    with pytest.raises(ConfigError) as raised:
        check_evaluation(empty)
    message = str(raised.value)
    assert f"mdgan-eval train-classifier data=mnist5k eval.classifier_dir={tmp_path / 'empty'}" in message
    assert "eval.every=0" in message
    empty.eval.every = 0
    check_evaluation(empty)  # scoring off: nothing to check
    check_evaluation(cfg)  # the cached classifier is found


@pytest.mark.slow
def test_check_evaluation_names_missing_inception_weights(cfg: Config, tmp_path: Path) -> None:
    missing = make_config(Path(cfg.eval.classifier_dir))
    missing.eval.inception_weights = str(tmp_path / "inception.pth")
    with pytest.raises(ConfigError, match=str(tmp_path / "inception.pth")):
        check_evaluation(missing)


@pytest.mark.slow
def test_evaluator_says_once_that_is_and_fid_are_skipped(cfg: Config, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mdgan_dist"):
        Evaluator(cfg, CPU)
    lines = [record for record in caplog.records if record.levelno == logging.INFO]
    assert len(lines) == 1 and "IS and FID skipped" in lines[0].getMessage()
    assert "eval.inception_weights" in lines[0].getMessage()


@pytest.mark.slow
@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "acgan"])
def test_score_generator_is_finite_deterministic_and_leaves_rng_alone(cfg: Config, conditional: bool) -> None:
    cfg = make_config(Path(cfg.eval.classifier_dir))
    cfg.model.conditional = conditional
    scorer = Evaluator(cfg, CPU)
    with seeded(0, "test generator"):
        model = build_generator(cfg.model, scorer.image_shape, scorer.num_classes)
    rng = torch.get_rng_state()
    first = scorer.score_generator(model, scorer.num_classes)
    second = scorer.score_generator(model, scorer.num_classes)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training
    assert set(first) == {*SCORES, *FIGURES}
    assert all(math.isfinite(value) for value in first.values())
    assert first == second


# mdgan-eval.


@pytest.mark.slow
def test_mdgan_eval_scores_a_folder_of_images(cfg: Config, heldout: torch.Tensor, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for index, image in enumerate(heldout[::25]):  # 20 digits, two of each class
        save_image(image, folder / f"{index:02d}.png", normalize=True, value_range=(-1, 1))
    command = ["score", str(folder), f"eval.classifier_dir={cfg.eval.classifier_dir}"]
    result = subprocess.run(
        [sys.executable, "-m", "mdgan_dist.metrics.cli", *command], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(scores) == {*SCORES, *FIGURES, "real_floor"}
    assert scores["classifier_score"] > 5  # 20 real digits of 10 classes
    assert scores["salt"] < 1e-3 and scores["class_share_min"] > 0
    assert set(scores["real_floor"]) == {*SCORES, *FIGURES}


@pytest.mark.slow
def test_mdgan_eval_scores_a_run_directory_with_overrides(
    cfg: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_config(Path(cfg.eval.classifier_dir))
    run.eval.num_samples = 123
    run.eval.every = 0
    config.save(run, tmp_path / "config.yaml")
    model = build_generator(run.model, (1, 28, 28), 10)
    torch.save({"generator": model.state_dict(), "iteration": 1}, tmp_path / "generator.pt")
    assert cli.run(["score", str(tmp_path), "eval.num_samples=50", "train.device=cpu"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert all(math.isfinite(scores[key]) for key in ("classifier_score", "frechet_distance"))


@pytest.mark.slow
def test_run_config_overrides_replace_only_what_they_name_or_change(cfg: Config, tmp_path: Path) -> None:
    run = make_config(Path(cfg.eval.classifier_dir))
    run.eval.num_samples = 123
    run.model.name = "mnist_cnn"
    run.data.root = "elsewhere"
    config.save(run, tmp_path / "config.yaml")
    # 500 is the default: named explicitly, it still replaces the saved 123.
    merged = cli.run_config(tmp_path / "config.yaml", ["eval.num_samples=500", "data=mnist5k"])
    assert merged.eval.num_samples == 500
    assert merged.data.root == "data"  # data=mnist5k replaced the whole data node
    assert merged.model.name == "mnist_cnn"  # not overridden: the run's own value
    assert merged.eval.classifier_dir == cfg.eval.classifier_dir


def test_mdgan_eval_reports_an_unknown_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.run(["score", str(tmp_path / "nowhere")]) == 2


# Inception, with random weights: the code path runs; the values mean nothing.


class _RandomInception(FeatureExtractorInceptionV3):
    def load_state_dict(self, state_dict, strict=True, assign=False):  # keep the random initialisation
        return None


@pytest.mark.slow
def test_inception_is_and_fid_with_random_weights(
    cfg: Config, heldout: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty.pth"
    torch.save({}, empty)
    with seeded(0, "inception"):
        random_model = _RandomInception("random", ["2048"], feature_extractor_weights_path=str(empty))
    weights = tmp_path / "inception.pth"
    torch.save(random_model.state_dict(), weights)
    del random_model
    monkeypatch.setattr(evaluator, "MAX_REAL_SAMPLES", 6)  # Inception at 299 x 299 is slow on a CPU
    with_inception = make_config(Path(cfg.eval.classifier_dir))
    with_inception.eval.inception_weights = str(weights)
    check_evaluation(with_inception)
    scores = Evaluator(with_inception, CPU).score(heldout[1::100])
    assert set(scores) == {*SCORES, *FIGURES, "is", "fid"}
    assert all(math.isfinite(value) for value in scores.values()), scores


def scored_run(cfg: Config, tmp: Path, world_size: int, overrides: list[str]) -> tuple[Path, str]:
    """A run of 5 iterations scored every 2: its directory and the server's output."""
    scoring = [
        "train.iterations=5",
        "eval.every=2",
        "log.progress=false",
        f"eval.classifier_dir={cfg.eval.classifier_dir}",
    ]
    job = train_job(tmp, world_size, [*overrides, *scoring])
    assert job.wait(240) == [0] * world_size, job.outputs()
    return tmp / "run", job.ranks[0].output


@pytest.fixture(scope="module")
def default_run(cfg: Config, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`make train` for 5 iterations: 1 server + 4 workers, every default but the length, the
    scoring interval and the classifier's cache."""
    return scored_run(cfg, tmp_path_factory.mktemp("default"), 5, [])


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["mdgan", "flgan", "standalone"])
def test_training_scores_its_generator_every_eval_every(
    cfg: Config, tmp_path: Path, request: pytest.FixtureRequest, algorithm: str
) -> None:
    """The server scores G every eval.every iterations and after the last one, into metrics.jsonl
    (records of their own) and tensorboard (score/...), for every algorithm; MD-GAN's run is the
    default one."""
    if algorithm == "mdgan":
        run_dir, output = request.getfixturevalue("default_run")
    else:
        overrides = [*TINY, f"algorithm={algorithm}", f"eval.num_samples={NUM_SAMPLES}", "model.conditional=true"]
        if algorithm == "flgan":  # averages every 2 iterations: the moving average of the server's G moves
            overrides.append("flgan.sync_every_epochs=0.01")
        run_dir, output = scored_run(cfg, tmp_path, 3 if algorithm == "flgan" else 1, overrides)
    scores = [record for record in metrics(run_dir) if "classifier_score" in record]
    assert [record["iteration"] for record in scores] == [2, 4, 5]
    assert all("is" not in record for record in scores)  # no Inception weights given
    # The last record is the score of the final G, recomputed here from generator.pt; the earlier
    # ones scored other (earlier) generators.
    # Scores of the moving average of G (generator.pt's "generator") under their names, of the raw
    # G (its "raw_generator") with the prefix raw_.
    run_cfg = config.load(run_dir / "config.yaml")
    scorer = Evaluator(run_cfg, CPU)
    for key, prefix in (("generator", ""), ("raw_generator", "raw_")):
        final = make_generator(run_cfg, (1, 28, 28), 10)
        final.load_state_dict(torch.load(run_dir / "generator.pt")[key])
        recomputed = scorer.score_generator(final, 10)
        assert {name: scores[-1][prefix + name] for name in recomputed} == pytest.approx(recomputed, rel=1e-4)
    assert scores[-1]["frechet_distance"] != scores[-1]["raw_frechet_distance"]  # the average is another G
    assert scores[0]["frechet_distance"] != scores[-1]["frechet_distance"]  # deterministic: another G
    assert "IS and FID" in output
    # What real images score, once per run, as scored here.
    floor = json.loads((run_dir / "real_floor.json").read_text())
    for name, value in scorer.real_floor().items():
        assert floor[name] == pytest.approx(value, rel=1e-5), name
    assert "real images score: classifier_score" in output
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    for tag in ("score/classifier_score", "score/raw_salt", "score/class_share_min", "real/frechet_distance"):
        assert [event.step for event in events.Scalars(tag)] == [2, 4, 5], tag
    assert events.Scalars("real/salt")[0].value == pytest.approx(floor["salt"]["mean"])


@pytest.mark.slow
def test_the_default_config_scores_and_writes_its_files(default_run: tuple[Path, str]) -> None:
    """Finite scores of the moving average and of the raw G, the real-data floor, the final models
    and a checkpoint that mdgan-eval scores as G's average."""
    run_dir, _ = default_run
    run_cfg = config.load(run_dir / "config.yaml")
    assert (run_cfg.model.name, run_cfg.model.conditional, run_cfg.gan.augment) == ("dcgan", True, "none")
    scores = [record for record in metrics(run_dir) if "classifier_score" in record]
    assert [record["iteration"] for record in scores] == [2, 4, 5]
    names = {*SCORES, *FIGURES}
    for record in scores:
        assert {*names, *(f"raw_{name}" for name in names)} <= set(record)
        assert all(math.isfinite(record[name]) for name in record)
    assert set(json.loads((run_dir / "real_floor.json").read_text())) == names
    expected = {
        "config.yaml",
        "metrics.jsonl",
        "real_floor.json",
        "generator.pt",
        "samples",
        "tensorboard",
        "workers.json",
    }
    expected |= {f"discriminator_rank{rank}.pt" for rank in range(1, 5)} | {
        f"stats_rank{rank}.json" for rank in range(5)
    }
    assert expected <= {path.name for path in run_dir.iterdir()}
    assert (run_dir / "samples" / "iteration_000005.png").stat().st_size > 1000
    final = torch.load(run_dir / "generator.pt")
    assert sorted(final) == ["generator", "iteration", "raw_generator"]
    checkpoint = run_dir / "checkpoints" / "iteration_00000005"
    assert cli.score(checkpoint, [])["frechet_distance"] == pytest.approx(scores[-1]["frechet_distance"], rel=1e-4)
