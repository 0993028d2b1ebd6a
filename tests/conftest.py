"""Shared fixtures: finished MD-GAN runs (one per case, made once per session) for the oracle,
byte-count and output tests."""

import sys
from pathlib import Path

import pytest

# Test helpers (multiproc.py) are imported as plain modules, and so are bench/'s: it is no package,
# its modules import each other by name, as bench/suite.py runs them.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from mdgan_dist import config
from mdgan_dist.config import Config
from multiproc import TINY, run_job

ITERATIONS = 6

# The defaults (the DCGAN pair, projection conditioning, the moving average of G) unless a case
# says otherwise.
CASES = {
    "N4-kN-swaps-no-adam-state-L2-saturating": (
        4,
        [
            "mdgan.k=4",
            "mdgan.swap_every_epochs=0.03",
            "mdgan.swap_optimizer_state=false",
            "gan.disc_steps=2",
            "gan.loss=saturating",
            "gan.real_label=1.0",
            "recipe=paper",  # no moving average of G, no augmentation
            "model=mnist_mlp",
            "model.conditional=false",
        ],
    ),
    # Convolutions, BatchNorm in G and minibatch discrimination in D take the same path; L = 3 D
    # steps on one real batch.
    "N2-k2-mnist-cnn-L3-reuse-real-swaps": (
        2,
        [
            "model=mnist_cnn",
            "mdgan.k=2",
            "gan.disc_steps=3",
            "gan.reuse_real_batch=true",
            "mdgan.swap_every_epochs=0.015",
        ],
    ),
    # ACGAN: labels travel with the batches, the class loss is in D's loss and in the feedback.
    # The augmentation's draws come from each worker's own stream, which stays with the worker.
    "N3-k2-acgan-swaps-augment": (
        3,
        ["gan.conditioning=acgan", "mdgan.k=2", "mdgan.swap_every_epochs=0.02", "gan.augment='translation,cutout'"],
    ),
    "N2-k1-acgan-mnist-cnn-class-split": (
        2,
        ["model=mnist_cnn", "gan.conditioning=acgan", "mdgan.k=1", "data.split=classes", "data.classes_per_worker=5"],
    ),
    # mdgan.overlap: iterations 1, 3 and 5 are sent ahead, by G before the previous step; swaps
    # after 2, 4 and 6 stop it from sending ahead across them.
    "N3-k2-overlap-swaps-augment": (
        3,
        ["mdgan.overlap=true", "mdgan.k=2", "mdgan.swap_every_epochs=0.02", "gan.augment='translation,cutout'"],
    ),
    # Reduced precision on the wire: batches, labels and feedback rounded to bfloat16 / float16.
    "N2-k2-bfloat16-acgan-swaps": (
        2,
        ["comm.dtype=bfloat16", "gan.conditioning=acgan", "mdgan.k=2", "mdgan.swap_every_epochs=0.015"],
    ),
    "N2-k1-float16-overlap": (
        2,
        ["comm.dtype=float16", "mdgan.overlap=true", "mdgan.k=1", "mdgan.swap_every_epochs=0"],
    ),
    # Several workers per process (mdgan.workers_per_rank): 4 workers on 2 processes, their D steps
    # and feedback batched; swaps move some D in memory and some between the processes.
    "N4-W2-k2-acgan-swaps-augment": (
        4,
        [
            "mdgan.workers_per_rank=2",
            "gan.conditioning=acgan",
            "mdgan.k=2",
            "mdgan.swap_every_epochs=0.03",
            "gan.augment='translation,cutout'",
        ],
    ),
    "N6-W3-k3-mlp-L2-swaps-no-adam-state-overlap": (
        6,
        [
            "mdgan.workers_per_rank=3",
            "model=mnist_mlp",
            "mdgan.k=3",
            "gan.disc_steps=2",
            "mdgan.swap_every_epochs=0.04",
            "mdgan.swap_optimizer_state=false",
            "mdgan.overlap=true",
        ],
    ),
    # The aggregation rules (mdgan.aggregate). class_aware: the workers tell the server the classes
    # of their shards (3 of the 10 each), and each sample follows the judges that hold its class.
    "N4-W2-k1-class-aware-class-split-swaps": (
        4,
        [
            "mdgan.workers_per_rank=2",
            "mdgan.aggregate=class_aware",
            "mdgan.k=1",
            "data.split=classes",
            "data.classes_per_worker=3",
            "mdgan.swap_every_epochs=0.03",
        ],
    ),
    # data.clusters: the labels are each image's k-means cluster, agreed on over the wire before
    # training by the 2 worker processes' 4 workers, and the labels travel with the batches.
    "N4-W2-k2-clusters-swaps": (
        4,
        ["data.clusters=5", "mdgan.workers_per_rank=2", "mdgan.k=2", "mdgan.swap_every_epochs=0.03"],
    ),
    # forgiving: the verdicts travel with the feedback, and each sample follows its most forgiving
    # of 2 judges; unconditional, since the rule needs no labels.
    "N4-k2-forgiving-unconditional-swaps": (
        4,
        ["mdgan.aggregate=forgiving", "mdgan.k=2", "model.conditional=false", "mdgan.swap_every_epochs=0.03"],
    ),
    # With several workers per process. In float32: rounded to bfloat16 on the wire, close verdicts
    # tie, and a tie decided on a rounding difference (vmap's against the reference's plain module)
    # picks another judge, which no tolerance covers.
    "N6-W3-k3-forgiving-projection-swaps": (
        6,
        ["mdgan.workers_per_rank=3", "mdgan.aggregate=forgiving", "mdgan.k=3", "mdgan.swap_every_epochs=0.04"],
    ),
    # Lying workers (fault.byzantine_worker) and the robust rules: every judge judges every sample
    # (k = 1). The median of 5 judges, 2 of them lying: one negates its feedback, one sends noise.
    "N5-k1-median-negate-noise-swaps": (
        5,
        [
            "mdgan.aggregate=median",
            "mdgan.k=1",
            "fault.byzantine_worker=[2@negate,4@noise]",
            "mdgan.swap_every_epochs=0.03",
        ],
    ),
    # The trimmed mean of 6 judges (2 dropped at each end) with 2 workers per process, liars beside
    # honest workers: slot 1 of rank 1 amplifies its feedback, slot 0 of rank 2 answers with a fresh
    # D, and both workers of rank 3 are free-riders whose D, swapped away, moves untrained.
    "N6-W2-k1-trimmed-amplify-untrained-lazy-swaps": (
        6,
        [
            "mdgan.workers_per_rank=2",
            "mdgan.aggregate=trimmed_mean",
            "mdgan.trim=2",
            "mdgan.k=1",
            "fault.byzantine_worker=[1:1@amplify,2:0@untrained,3@lazy]",
            "mdgan.swap_every_epochs=0.04",
        ],
    ),
    # Norm clipping against a free-rider that answers with a fresh D of its own (through its own
    # augmentation stream, as an honest D).
    "N4-k1-clipped-untrained-augment-swaps": (
        4,
        [
            "mdgan.aggregate=clipped",
            "mdgan.k=1",
            "fault.byzantine_worker=3@untrained",
            "gan.augment=translation",
            "mdgan.swap_every_epochs=0.03",
        ],
    ),
    # The geometric median (RFA's smoothed Weiszfeld) of 6 judges, 2 workers per process: slot 1 of
    # rank 1 amplifies its feedback, slot 0 of rank 3 negates it, beside honest workers.
    "N6-W2-k1-geometric-median-amplify-negate-swaps": (
        6,
        [
            "mdgan.workers_per_rank=2",
            "mdgan.aggregate=geometric_median",
            "mdgan.k=1",
            "fault.byzantine_worker=[1:1@amplify,3:0@negate]",
            "mdgan.swap_every_epochs=0.04",
        ],
    ),
    # The R1 penalty on the real images, after the augmentation: a double backward. (With several
    # workers per process, vmap's rounding of it, which Adam turns into visible steps of weights
    # whose gradient is near zero, is beyond the oracle's tolerance; test_stack checks that path
    # step by step.)
    "N4-k2-r1-unconditional-augment-swaps": (
        4,
        [
            "gan.r1=10",
            "model.conditional=false",
            "mdgan.k=2",
            "gan.augment=translation",
            "mdgan.swap_every_epochs=0.03",
        ],
    ),
    # privacy.*: DP-SGD discriminators, their Poisson samples and noise from train.seed (so that the
    # reference draws the same), records clipped hard; ACGAN's class loss is in each record's loss,
    # the discriminators swap.
    "N4-W2-k2-private-acgan-swaps": (
        4,
        [
            "privacy.epsilon=8",
            "privacy.secret_noise=false",
            "privacy.clip=0.05",
            "mdgan.workers_per_rank=2",
            "gan.conditioning=acgan",
            "mdgan.k=2",
            "mdgan.swap_every_epochs=0.03",
        ],
    ),
    # With one worker per process (its D unstacked), the noise multiplier given, unconditional.
    "N2-k1-private-sigma-unconditional-L2": (
        2,
        [
            "privacy.epsilon=20",
            "privacy.noise_multiplier=0.8",
            "privacy.secret_noise=false",
            "model.conditional=false",
            "mdgan.k=1",
            "gan.disc_steps=2",
        ],
    ),
}


# The fast tier's cases: between them overlap, swaps, augmentation, k < N and k = N, reduced
# precision, ACGAN's labels on the wire, the rules other than the mean and privacy with several
# workers per process.
FAST = {
    "N3-k2-overlap-swaps-augment",
    "N2-k2-bfloat16-acgan-swaps",
    "N4-W2-k2-acgan-swaps-augment",
    "N4-W2-k1-class-aware-class-split-swaps",
    "N6-W3-k3-forgiving-projection-swaps",
    "N4-W2-k2-private-acgan-swaps",
}


@pytest.fixture(
    scope="session",
    params=[pytest.param(case, marks=() if case in FAST else pytest.mark.slow) for case in CASES],
)
def finished_run(request, tmp_path_factory) -> tuple[Path, int]:
    num_workers, overrides = CASES[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    per_rank = next((int(o.split("=")[1]) for o in overrides if o.startswith("mdgan.workers_per_rank=")), 1)
    overrides = [*TINY, f"train.iterations={ITERATIONS}", "log.every=1", "log.sample_every=3", *overrides]
    return run_job(tmp, num_workers // per_rank + 1, overrides), num_workers


def load_config(run_dir: Path) -> Config:
    return config.load(run_dir / "config.yaml")
