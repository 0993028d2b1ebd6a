"""The typed configuration: one dataclass per component, validated before any process trains.

Hydra composes YAML from `conf/`; `train.py` turns it into these dataclasses at the edge and only
dataclasses travel further. Every field has the default the docs describe.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


class Choice(str, enum.Enum):
    """A field's fixed set of values. OmegaConf reads an enum by its members' names (refusing others with
    the field, value and names), so each value is its name, as the command line and str() spell it."""

    @staticmethod
    def _generate_next_value_(name: str, _start: int, _count: int, _last_values: list[Any]) -> str:
        return name

    def __str__(self) -> str:
        return str(self.value)


class DataSplit(Choice):
    iid = enum.auto()  # equal shards
    dirichlet = enum.auto()  # non-iid label skew (data.alpha)
    classes = enum.auto()  # data.classes_per_worker classes per worker


class GeneratorLoss(Choice):
    non_saturating = enum.auto()  # -log D(G(z))
    saturating = enum.auto()  # the paper's log(1 - D(G(z)))


class Conditioning(Choice):
    acgan = enum.auto()  # the paper's: D also classifies, a class loss for D and G
    projection = enum.auto()  # the class enters D's real/fake logit, no class loss (Miyato & Koyama 2018)


class Aggregate(Choice):
    """How the workers' feedback becomes G's gradient: each has its rule in algorithms/aggregation.py."""

    mean = enum.auto()  # the paper's
    class_aware = enum.auto()  # a sample follows only the judges whose shard holds its class (conditional models)
    forgiving = enum.auto()  # F2U: a sample follows the judge that finds it the most real
    median = enum.auto()  # each value of a sample's gradient: the median of its judges' (robust to liars)
    trimmed_mean = enum.auto()  # each value: the mean of its judges' without the mdgan.trim lowest and highest
    clipped = enum.auto()  # the mean after each judge's feedback of a sample is clipped to the judges' median norm
    geometric_median = enum.auto()  # a sample's gradient: the point nearest all its judges' (RFA, smoothed Weiszfeld)


class Lie(Choice):
    """How a lying worker (fault.byzantine_worker) answers: algorithms/mdgan/lies.py."""

    noise = enum.auto()  # Gaussian noise, each sample's with the norm of its honest feedback
    negate = enum.auto()  # -F_n
    amplify = enum.auto()  # 100 x F_n
    reverse = enum.auto()  # -100 x F_n: with 3 liars of 10 the mean points against the honest feedback
    lazy = enum.auto()  # a free-rider: never trains the D it holds, answers with that D's feedback
    untrained = enum.auto()  # a free-rider: never trains, answers with a fresh, untrained D's feedback


class Device(Choice):
    auto = enum.auto()  # the rank's GPU with NCCL, the CPU with gloo
    cuda = enum.auto()
    cpu = enum.auto()


class Precision(Choice):
    float32 = enum.auto()
    bf16 = enum.auto()  # G's and D's forward passes under bf16 autocast; their state stays float32


class Backend(Choice):
    auto = enum.auto()  # nccl only with one GPU per local rank, gloo otherwise
    gloo = enum.auto()
    nccl = enum.auto()


class WireDtype(Choice):
    """What the generated batches and the feedback travel as; the names are torch's dtypes."""

    float32 = enum.auto()
    bfloat16 = enum.auto()
    float16 = enum.auto()


class OnError(Choice):
    stop = enum.auto()  # every rank stops, with the error
    warn = enum.auto()  # training goes on without that checkpoint


class ExistingRun(Choice):
    refuse = enum.auto()  # nothing is written
    move_aside = enum.auto()  # that run is renamed to <run.dir>.set-aside-<time> (nothing deleted)


@dataclass
class DataConfig:
    name: str = "mnist5k"  # mnist5k | mnist | fashion_mnist | cifar10 | imagefolder
    root: str = "data"  # local root in torchvision's layout; never downloaded into
    split: DataSplit = DataSplit.iid  # how the train split is divided among the workers
    alpha: float = 0.5  # Dirichlet concentration for split=dirichlet; smaller is more skewed
    classes_per_worker: int = 2  # c for split=classes: each worker holds only c of the classes
    image_size: int | None = None  # resize to image_size x image_size; required for imagefolder
    channels: int = 3  # imagefolder only: 1 (grey) or 3 (RGB)
    # K >= 2: train a conditional model on unlabelled data, each image labelled by its k-means
    # cluster, agreed on by server and workers before training (algorithms/clusters.py); 0: the dataset's labels
    clusters: int = 0


@dataclass
class ModelConfig:
    name: str = "dcgan"  # mnist_mlp | mnist_cnn | cifar10_cnn (the paper's) | dcgan
    z_dim: int = 100
    width: float = 0.5  # scales hidden sizes and channels; 1.0 is the published architecture
    # G takes class labels, D adds one logit per class (the paper's 11 outputs), used as gan.conditioning says
    conditional: bool = True


@dataclass
class GANConfig:
    """The GAN itself, the same for every algorithm (standalone, FL-GAN, MD-GAN)."""

    loss: GeneratorLoss = GeneratorLoss.non_saturating
    conditioning: Conditioning = Conditioning.projection  # how D uses the classes, with model.conditional
    real_label: float = 0.9  # D's target for real samples: 0.9 is one-sided label smoothing, 1 none
    disc_steps: int = 1  # L: discriminator steps per iteration
    reuse_real_batch: bool = False  # one real batch for all L steps instead of a fresh one each
    # Halflife, in iterations, of the exponential moving average of G's weights that samples,
    # scores and generator.pt come from (algorithms/ema.py); 0 shows the raw G, as the paper does.
    ema_halflife: float = 100.0
    # What a discriminator sees of every image, real or generated (augment.py, DiffAugment):
    # "translation", "cutout", both comma-separated, or "none": the images as they are, as in the
    # paper and the default run (docs/studies.md, "The default run", measured both).
    augment: str = "none"
    # gamma of the R1 penalty (Mescheder et al. 2018): gamma / 2 x the mean over real samples of the
    # squared norm of the gradient of D's real/fake logit with respect to the image D sees; 0: off
    r1: float = 0.0


@dataclass
class MDGANConfig:
    k: int | None = None  # generated batches per iteration; None means ceil(log2 N), at least 1
    swap_every_epochs: float = 1.0  # E: local epochs between discriminator swaps; 0 disables
    swap_optimizer_state: bool = True  # the Adam state travels with the discriminator
    # Send iteration t+1's batches while the workers compute on t: G then lags one step behind
    # the batches it is updated from (a one-step staleness); false is the paper's exact algorithm.
    overlap: bool = False
    real_ahead: bool = True  # a worker's next D step's real half computed as it waits: no number changes
    quorum: int | None = None  # step G once this many feedbacks arrived, discard later ones; None: all N
    # W: the workers each worker process hosts, with their D steps and feedback batched over them;
    # N = W x (processes - 1). 1: one worker per process, the paper's layout.
    workers_per_rank: int = 1
    aggregate: Aggregate = Aggregate.mean  # how the workers' feedback becomes G's gradient
    trim: int = 1  # aggregate=trimmed_mean: the judges' values dropped at each end, per value
    # Name a worker whose feedback lies far from its batch's other judges' this many iterations in a
    # row, and drop it with fault.tolerate_worker_loss (algorithms/mdgan/outliers.py); 0: never
    outlier_iterations: int = 0


@dataclass
class FLGANConfig:
    sync_every_epochs: float = 1.0  # E: local epochs between two averagings of G and D by the server


@dataclass
class OptimConfig:
    g_lr: float = 5e-4  # the paper's (DCGAN's) 2e-4 under recipe=paper
    d_lr: float = 5e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # Adam's epsilon. Adam ignores a constant scale c of the gradient except through it:
    # Adam(c * g, eps) steps as Adam(g, eps / c) (docs/studies.md, "Salt noise").
    g_eps: float = 1e-8
    d_eps: float = 1e-8


@dataclass
class TrainConfig:
    iterations: int = 3000  # I: global iterations (generator steps)
    batch_size: int = 64  # b
    seed: int = 0
    device: Device = Device.auto
    precision: Precision = Precision.float32
    channels_last: bool = False  # convolutional models and their image inputs in channels_last (GPU tensor cores)
    compile: bool = False  # torch.compile G and D; the first iterations pay for the compilation
    threads: int | None = None  # torch intra-op threads per process; None: the node's cores shared by its ranks


@dataclass
class CommConfig:
    backend: Backend = Backend.auto
    timeout_s: float = 120.0  # every wait on a peer ends after this many seconds
    dtype: WireDtype = WireDtype.float32


@dataclass
class LogConfig:
    every: int = 10  # iterations between scalar logs (tensorboard and metrics.jsonl)
    sample_every: int = 500  # iterations between sample grids
    num_samples: int = 64  # images in a sample grid
    progress: bool = True  # progress bar on the server


@dataclass
class CheckpointConfig:
    every: int = 1000  # iterations between checkpoints (and one at the end); 0 disables
    keep: int = 2  # complete checkpoints kept on disk, at least 2
    on_error: OnError = OnError.stop  # when one cannot be written (a full disk)


@dataclass
class FaultConfig:
    tolerate_worker_loss: bool = False  # drop a dead or silent worker and go on with the others
    # "RANK@ITERATION", or a list of them ([2@200,5@400]): each named worker kills itself (SIGKILL) at
    # its iteration, for tests, demos and crash studies. Any: OmegaConf's schema has no str-or-list type.
    kill_worker: Any = None
    slow_worker: str | None = None  # "RANK@SECONDS": that worker sleeps this long before each feedback (a straggler)
    nan_worker: str | None = None  # "RANK@ITERATION": that worker's D turns NaN there (a diverged D), for tests
    # "RANK@ITERATION": that rank's checkpoint file of that iteration fails as on a full disk (0: the server)
    checkpoint_error: str | None = None
    # "RANK@MODE" (every worker of that process), "RANK:SLOT@MODE" (one of its workers), or a list
    # ([2@negate,1:0@lazy]): they lie in their feedback (Lie), for studies and tests. MD-GAN only.
    byzantine_worker: Any = None


@dataclass
class PrivacyConfig:
    """DP-SGD discriminators (docs/design.md, "Privacy"), on when epsilon is set."""

    epsilon: float | None = None  # the whole run's epsilon per record of a worker's shard; None: off
    delta: float = 1e-5
    clip: float = 1.0  # C: each record's gradient of D's loss is clipped to this L2 norm
    noise_multiplier: float | None = None  # sigma (noise std / C); None: the least that meets epsilon
    secret_noise: bool = True  # false: sampling and noise from train.seed (reproducible, no guarantee)
    redo_iterations: int = 0  # iterations that resumes may run a second time, in the budget from the start


@dataclass
class EvalConfig:
    every: int = 1000  # iterations between scores (and one at the end); 0 disables scoring
    num_samples: int = 500  # generated samples per score
    classifier_dir: str = "~/.cache/mdgan_dist/classifiers"  # where `mdgan-eval train-classifier` caches
    inception_weights: str | None = None  # local Inception weights file: adds IS and FID


@dataclass
class RunConfig:
    dir: str | None = None  # None: runs/<SLURM job id or a start time chosen by rank 0>
    existing: ExistingRun = ExistingRun.refuse  # when run.dir holds a run this one would not continue


@dataclass
class Config:
    algorithm: str = "mdgan"  # mdgan | flgan | standalone (one process, whole dataset)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    mdgan: MDGANConfig = field(default_factory=MDGANConfig)
    flgan: FLGANConfig = field(default_factory=FLGANConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    comm: CommConfig = field(default_factory=CommConfig)
    log: LogConfig = field(default_factory=LogConfig)
    run: RunConfig = field(default_factory=RunConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    fault: FaultConfig = field(default_factory=FaultConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    resume: str = "auto"  # auto: newest complete checkpoint in run.dir | never: fresh run only | a path


def resolved_k(cfg: MDGANConfig, num_workers: int) -> int:
    """The number of generated batches per iteration: the configured k or ceil(log2 N), min 1."""
    if cfg.k is not None:
        return cfg.k
    return max(1, math.ceil(math.log2(num_workers))) if num_workers > 1 else 1


def to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain values, each choice as its name: for JSON and a weights_only load."""
    plain: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(cfg)))
    return plain


def save(cfg: Config, path: Path) -> None:
    path.write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))


def load(path: Path) -> Config:
    """The config a run saved (its config.yaml), typed and checked against the schema."""
    merged = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(path))
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, Config)  # a structured Config merge converts back to one
    return cfg
