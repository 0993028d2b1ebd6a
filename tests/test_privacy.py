"""privacy.*: DP-SGD discriminators. Each record's gradient as computed alone, the clip bound, the
noise's scale, the Poisson sampling, and the accountant against published values. The oracle
(conftest's private cases) checks whole distributed runs against a record-by-record reference."""

from __future__ import annotations

import json
import math
import secrets
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from dp_accounting import NeighboringRelation
from scipy.integrate import quad
from scipy.optimize import brentq
from scipy.stats import norm
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mdgan_dist.algorithms.components import make_discriminator
from mdgan_dist.algorithms.mdgan.private import PrivateBatch, PrivateGradient, clip_factors, per_record_gradients
from mdgan_dist.algorithms.mdgan.stack import DiscriminatorStack
from mdgan_dist.algorithms.steps import real_loss
from mdgan_dist.checkpoint import checkpoint_dir
from mdgan_dist.config import Conditioning, Config
from mdgan_dist.data import PoissonSampler
from mdgan_dist.errors import ConfigError
from mdgan_dist.privacy import (
    MT_WORDS,
    MT_WORDS_OFFSET,
    RELEASED_FILE,
    calibrated_noise,
    private_generator,
    record_epsilon,
    secret_generator,
)
from mdgan_dist.privacy_ledger import PrivacyLedger
from mdgan_dist.trajectory import trajectory_settings
from multiproc import TINY, run_job, train_job

SHAPE, CLASSES, SLOTS, RECORDS = (1, 28, 28), 10, 2, 5


def small_config(conditioning: Conditioning = Conditioning.acgan) -> Config:
    cfg = Config()
    cfg.model.width = 0.0625
    cfg.gan.conditioning = conditioning
    cfg.train.batch_size = 4
    cfg.privacy.epsilon, cfg.privacy.secret_noise = 1.0, False
    return cfg


def stack_of(cfg: Config) -> DiscriminatorStack:
    return DiscriminatorStack([make_discriminator(cfg, SHAPE, CLASSES, n) for n in range(SLOTS)])


def records_loss(cfg: Config) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """The loss whose gradient a private D step clips per record."""

    def loss(output: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        return real_loss(output, cfg.gan.real_label, classes, cfg.gan.conditioning)

    return loss


@pytest.mark.parametrize("conditioning", [Conditioning.acgan, Conditioning.projection])
def test_each_records_gradient_is_its_own(conditioning: Conditioning) -> None:
    """vmap's per-record gradients equal autograd on each record alone, through each slot's D."""
    cfg = small_config(conditioning)
    torch.manual_seed(0)
    stack = stack_of(cfg)
    images, classes = torch.randn(SLOTS, RECORDS, *SHAPE), torch.randint(0, CLASSES, (SLOTS, RECORDS))
    gradients = per_record_gradients(stack, images, classes, records_loss(cfg))
    assert gradients.shape == (SLOTS, RECORDS, sum(param[0].numel() for param in stack.parameters()))
    for slot in range(SLOTS):
        module = make_discriminator(cfg, SHAPE, CLASSES, slot)
        for record in range(RECORDS):
            output = module(images[slot, record : record + 1])
            loss = records_loss(cfg)(output, classes[slot, record : record + 1])
            expected = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(module.parameters()))])
            torch.testing.assert_close(gradients[slot, record], expected, rtol=1e-4, atol=1e-6)


def test_every_clipped_gradient_is_within_the_bound() -> None:
    """Every record's gradient, times its factor, has a norm of at most C; those already within
    it are left as they are."""
    cfg = small_config()
    stack = stack_of(cfg)
    images = torch.randn(SLOTS, RECORDS, *SHAPE) * torch.linspace(0.1, 10, RECORDS).view(1, -1, 1, 1, 1)
    gradients = per_record_gradients(stack, images, torch.randint(0, CLASSES, (SLOTS, RECORDS)), records_loss(cfg))
    norms = gradients.norm(dim=-1)
    clip = norms.median().item()  # some records above it, some below
    clipped = gradients * clip_factors(gradients, clip).unsqueeze(-1)
    assert (clipped.norm(dim=-1) <= clip * (1 + 1e-5)).all()
    within = norms <= clip
    assert within.any() and (~within).any()
    torch.testing.assert_close(clipped[within], gradients[within])


def test_the_noise_has_the_stated_scale() -> None:
    """With no record drawn, the gradient is the noise alone: N(0, (sigma C / b)^2) per value,
    each slot from its own stream, the same again from train.seed, never again from a secret one."""
    cfg = small_config()
    cfg.privacy.clip, sigma = 0.5, 1.3
    stack = stack_of(cfg)
    empty = PrivateBatch(torch.zeros(SLOTS, 0, *SHAPE), torch.zeros(SLOTS, 0, dtype=torch.long), torch.zeros(SLOTS, 0))

    def noise_of(secret: bool) -> torch.Tensor:
        cfg.privacy.secret_noise = secret
        for param in stack.parameters():
            param.grad = None
        PrivateGradient(cfg, list(range(SLOTS)), sigma).accumulate(stack, empty, records_loss(cfg))
        return torch.cat([param.grad.flatten(1) for param in stack.parameters()], dim=1)

    noise = noise_of(secret=False)
    expected = sigma * cfg.privacy.clip / cfg.train.batch_size
    values = noise.numel()
    assert values > 5_000
    assert abs(noise.std().item() / expected - 1) < 0.05  # 5 % is over 5 standard errors here
    assert abs(noise.mean().item()) < 5 * expected / values**0.5
    assert not torch.allclose(noise[0], noise[1])
    torch.testing.assert_close(noise_of(secret=False), noise)
    assert not torch.allclose(noise_of(secret=True), noise_of(secret=True))


def test_the_poisson_sampler_draws_each_record_at_its_rate_and_resumes() -> None:
    images, labels = torch.arange(200.0).view(200, 1, 1, 1), torch.arange(200)
    sampler = PoissonSampler(images, labels, 0.1, private_generator(small_config(), "sampling", 0))
    counts = torch.zeros(200)
    sizes = []
    for _ in range(500):
        _, drawn = sampler.next_batch()
        counts[drawn] += 1
        sizes.append(len(drawn))
    assert abs(sum(sizes) / len(sizes) - 20) < 1  # the expected batch, 0.1 x 200 (standard error 0.13)
    assert len(set(sizes)) > 5  # its size varies
    assert abs(counts.mean().item() / 500 - 0.1) < 0.005
    state = sampler.state_dict()
    ahead = [sampler.next_batch()[1] for _ in range(3)]
    sampler.load_state_dict(state)
    assert all(torch.equal(sampler.next_batch()[1], drawn) for drawn in ahead)


@pytest.mark.parametrize(("sigma", "epochs", "published"), [(1.3, 20, 1.34), (0.7, 70, 8.68)])
def test_the_accountant_against_published_values(sigma: float, epochs: int, published: float) -> None:
    """DP-SGD on MNIST at q = 256 / 60000, delta = 1e-5, records added or removed: Bu, Dong, Long,
    Su, "Deep Learning with Gaussian Differential Privacy" (Harvard Data Science Review 2020,
    figure 4) report the moments accountant's (1.34, 1e-5) after 20 epochs at sigma = 1.3 and (8.68,
    1e-5) after 70 at 0.7. The privacy loss distribution is tighter than the moments accountant:
    at most the published value, and within 30 % of it."""
    steps = round(epochs * 60000 / 256)
    epsilon = record_epsilon(256 / 60000, sigma, steps, 1e-5, NeighboringRelation.ADD_OR_REMOVE_ONE)
    assert 0.7 * published <= epsilon <= published


@pytest.mark.parametrize(("sigma", "steps"), [(4.0, 16), (20.0, 100)])
def test_a_replaced_record_costs_what_the_gaussian_mechanism_does(sigma: float, steps: int) -> None:
    """Without sampling (q = 1), T steps of noise sigma x C on a sum where one record, replaced,
    moves the sum by up to 2C, compose into one Gaussian mechanism of sensitivity 2 sqrt(T) / sigma
    (mu-GDP, Dong, Roth, Su, JRSS-B 2022, Corollary 3.3), whose exact (epsilon, delta) is Balle and
    Wang's (ICML 2018, Theorem 8): delta = Phi(mu / 2 - epsilon / mu) - e^epsilon Phi(-mu / 2 -
    epsilon / mu). The run's accountant (replaced records) gives that epsilon, rounded up."""
    mu, delta = 2 * steps**0.5 / sigma, 1e-5

    def excess(epsilon: float) -> float:
        return norm.cdf(mu / 2 - epsilon / mu) - math.exp(epsilon) * norm.cdf(-mu / 2 - epsilon / mu) - delta

    exact = brentq(excess, 0.0, 100.0)
    assert exact <= record_epsilon(1.0, sigma, steps, delta) <= exact * 1.01


@pytest.mark.parametrize(("rate", "sigma"), [(0.1, 1.0), (64 / 450, 4.0)])
def test_one_sampled_step_with_a_replaced_record_against_its_integral(rate: float, sigma: float) -> None:
    """One Poisson-sampled step, a record's clipped gradient replaced by its opposite (-C and +C:
    the pair dp-accounting composes for a replaced record): delta(epsilon) is the hockey-stick
    divergence of the two mixtures q N(+1, sigma^2) + (1 - q) N(0, sigma^2) and q N(-1, sigma^2) +
    (1 - q) N(0, sigma^2), integrated here directly; the accountant's epsilon at delta meets it."""
    delta = 1e-5
    epsilon = record_epsilon(rate, sigma, 1, delta)

    def mixture(x: float, shift: float) -> float:
        return rate * norm.pdf(x, shift, sigma) + (1 - rate) * norm.pdf(x, 0, sigma)

    def divergence(at: float) -> float:
        excess = lambda x: max(0.0, mixture(x, 1.0) - math.exp(at) * mixture(x, -1.0))  # noqa: E731
        return quad(excess, -40 * sigma, 40 * sigma, limit=400, points=[0.0])[0]

    assert divergence(epsilon) <= delta * 1.001  # a bound
    assert divergence(epsilon * 0.98) > delta  # and a tight one


def test_the_ledger_counts_what_went_out_and_refuses_a_resume_past_the_budget(tmp_path: Path) -> None:
    """A resume at iteration c released at least c iterations, file or none; a count that, with the
    iterations left, passes train.iterations + privacy.redo_iterations is refused before a TRAIN."""
    cfg = small_config()
    cfg.train.iterations, cfg.privacy.redo_iterations, cfg.privacy.noise_multiplier = 10, 2, 1.0
    ledger = PrivacyLedger(cfg, [100, 120], tmp_path)
    ledger.release(4)  # a checkpoint of iteration 4 of a version that kept no count
    assert json.loads((tmp_path / RELEASED_FILE).read_text()) == {"released": 5}
    (tmp_path / RELEASED_FILE).write_text(json.dumps({"released": 7}))
    PrivacyLedger(cfg, [100, 120], tmp_path).release(5)  # 7 out, 5 more: 12, the budget
    with pytest.raises(ConfigError, match="resuming at iteration 5 would pass the privacy budget: 8 iterations"):
        PrivacyLedger(cfg, [100, 120], tmp_path).release(5)  # 8 out, 5 more: 13


def test_the_secret_streams_hold_a_whole_secret_state() -> None:
    """A seeded Mersenne Twister's 624 words follow from its first (w[i] = 1812433253 x (w[i-1] xor
    w[i-1] >> 30) + i): 32 bits to guess. A secret stream's words are drawn one by one."""

    def words(generator: torch.Generator) -> list[int]:
        state = generator.get_state().numpy().tobytes()
        return list(struct.unpack_from(f"<{MT_WORDS}Q", state, MT_WORDS_OFFSET))

    def seeded_order(values: list[int]) -> bool:
        return all(
            values[i] == (1812433253 * (values[i - 1] ^ (values[i - 1] >> 30)) + i) % 2**32 for i in range(1, 624)
        )

    assert seeded_order(words(torch.Generator().manual_seed(secrets.randbits(63))))
    first, second = secret_generator(), secret_generator()
    assert not seeded_order(words(first)) and words(first) != words(second)
    assert not torch.equal(torch.randn(1000, generator=first), torch.randn(1000, generator=second))


def test_the_calibrated_noise_just_meets_epsilon() -> None:
    rate, steps, target = 64 / 6000, 4000, 10.0
    sigma = calibrated_noise(rate, steps, target, 1e-5)
    assert record_epsilon(rate, sigma, steps, 1e-5) <= target
    assert record_epsilon(rate, sigma * 0.98, steps, 1e-5) > target
    assert record_epsilon(rate, sigma, steps // 2, 1e-5) < target  # epsilon grows with the steps


@pytest.mark.slow
def test_a_private_run_logs_its_epsilon_keeps_its_secrets_and_resumes_within_its_budget(tmp_path: Path) -> None:
    """Two runs alike but for their secret streams end with different models; each logs the
    epsilon spent after every score, checkpoint and the last iteration, in metrics.jsonl and
    tensorboard; its workers' checkpoint files, in the shared run directory, hold no secret stream.
    A run stopped after its checkpoint resumes from it and runs the iterations after it again:
    they count twice, within privacy.redo_iterations, and a second resume past that is refused."""
    overrides = [
        *TINY, "train.iterations=8", "eval.every=4", "log.every=2", "checkpoint.every=6",
        "privacy.epsilon=3", "privacy.redo_iterations=2",
    ]  # fmt: skip
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    runs = [run_job(tmp_path / name, 3, overrides) for name in ("a", "b")]
    generators = [torch.load(run / "generator.pt")["generator"] for run in runs]
    assert any(not torch.equal(generators[0][name], generators[1][name]) for name in generators[0])

    def spent(run: Path) -> dict[int, float]:
        records = [json.loads(line) for line in (run / "metrics.jsonl").open() if '"g_loss"' in line]
        return {record["iteration"]: record["privacy_epsilon"] for record in records if "privacy_epsilon" in record}

    first = spent(runs[0])
    assert list(first) == [4, 6, 8] and 0 < first[4] < first[6] < first[8] < 3.0
    assert json.loads((runs[0] / RELEASED_FILE).read_text()) == {"released": 8}
    events = EventAccumulator(str(runs[0] / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("privacy_epsilon")] == [4, 6, 8]
    worker_files = sorted(checkpoint_dir(runs[0], 6).glob("rank*.pt"))
    assert len(worker_files) == 2
    for path in worker_files:
        state = torch.load(path, weights_only=True)
        assert state["samplers"] is None and state["private"] is None and "discriminators" in state

    def back_to_iteration_6() -> None:  # as after a crash past the checkpoint of iteration 6
        shutil.rmtree(checkpoint_dir(runs[0], 8))
        (runs[0] / "generator.pt").unlink()

    back_to_iteration_6()
    resumed = run_job(tmp_path / "a", 3, overrides)
    assert json.loads((resumed / RELEASED_FILE).read_text()) == {"released": 10}
    assert first[8] < spent(resumed)[8] <= 3.0  # 10 iterations' steps released: the whole budget
    back_to_iteration_6()
    job = train_job(tmp_path / "a", 3, overrides)
    assert job.wait(120) != [0, 0, 0]
    assert "resuming at iteration 6 would pass the privacy budget: 10 iterations' D steps went out" in job.outputs()
    assert json.loads((resumed / RELEASED_FILE).read_text()) == {"released": 10}


def test_a_computed_noise_multiplier_ties_the_trajectory_to_the_runs_length() -> None:
    """Computed, sigma lasts train.iterations: a run resumed for more iterations would overspend,
    so the length joins the settings a resume must match; given, sigma is the same for any length
    (and the budget check refuses a length that overspends)."""

    def settings(iterations: int, sigma: float | None) -> dict:
        cfg = small_config()
        cfg.train.iterations, cfg.privacy.noise_multiplier = iterations, sigma
        return trajectory_settings(cfg, 2)

    assert settings(100, None) != settings(200, None)
    assert settings(100, 1.0) == settings(200, 1.0)
    assert settings(100, 1.0)["privacy"]["accounting"] == "pld-replace-one"  # a checkpoint accounted otherwise differs
