"""Bad configs and missing files are reported before training, by every rank, with what to do.

Every message is checked in this process, through the checks the trainer makes at start-up; two
cases also as the trainer itself, for its exit code and its clean output."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mdgan_dist.algorithms.registry import ALGORITHMS, validate
from mdgan_dist.compose import compose
from mdgan_dist.config import CommConfig, Config, ModelConfig
from mdgan_dist.errors import ConfigError
from mdgan_dist.fault_plan import FaultPlan
from mdgan_dist.validation import validate_wire_labels
from multiproc import TINY, train_job
from trainer_checks import checked_config

LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")

# (launcher environment, overrides, text the message must contain)
CASES = {
    "one process": ({}, [], "algorithm=mdgan needs at least 2 processes"),
    "standalone in a group": ({"WORLD_SIZE": "3"}, ["algorithm=standalone"], "algorithm=standalone runs in one"),
    "unknown algorithm": ({"WORLD_SIZE": "3"}, ["algorithm=gossip"], "algorithm='gossip' is not one of"),
    # An option the chosen algorithm does not read, set off its default, is refused (registry.py: reads).
    "straggler for standalone": (
        {},
        ["algorithm=standalone", "fault.slow_worker=1@3"],
        "fault.slow_worker=1@3 with algorithm=standalone: standalone does not read fault.slow_worker; remove it "
        "(beyond the sections every algorithm reads, standalone reads only fault.nan_worker, fault.checkpoint_error)",
    ),
    "k for flgan": (
        {"WORLD_SIZE": "3"},
        ["algorithm=flgan", "mdgan.k=2"],
        "mdgan.k=2 with algorithm=flgan: flgan does not read mdgan.*",
    ),
    "flgan's period for mdgan": (
        {"WORLD_SIZE": "3"},
        ["flgan.sync_every_epochs=2"],
        "flgan.sync_every_epochs=2.0 with algorithm=mdgan: mdgan does not read flgan.*; remove it",
    ),
    "several options for standalone": (
        {},
        ["algorithm=standalone", "mdgan.swap_every_epochs=0", "fault.kill_worker=[2@3]"],
        'mdgan.swap_every_epochs=0.0, fault.kill_worker=["2@3"] with algorithm=standalone: standalone does not '
        "read mdgan.* or fault.kill_worker; remove them",
    ),
    "kill point beyond flgan's workers": (
        {"WORLD_SIZE": "3"},
        ["algorithm=flgan", "fault.kill_worker=3@3"],
        "expected RANK@ITERATION with a worker rank in 1..2",
    ),
    "worker faults for standalone": (
        {},
        ["algorithm=standalone", "fault.tolerate_worker_loss=true"],
        "fault.tolerate_worker_loss=true with algorithm=standalone: standalone does not read fault.tolerate_worker_loss",
    ),
    "no classifier": (
        {"WORLD_SIZE": "3"},
        ["eval.every=5", "eval.classifier_dir=empty"],
        "mdgan-eval train-classifier data=mnist5k",
    ),
    "classes left out": ({"WORLD_SIZE": "3"}, ["data.split=classes"], "covers only 4 of 10 classes"),
    "k above N": ({"WORLD_SIZE": "3"}, ["mdgan.k=3"], "mdgan.k=3 is outside 1..N with N=2 workers"),
    "batch above shard": ({"WORLD_SIZE": "3"}, ["train.batch_size=3000"], "larger than the shard of worker"),
    "unknown dataset": ({"WORLD_SIZE": "3"}, ["data=imagenet"], "Could not find 'data/imagenet'"),
    "unknown dataset name": ({"WORLD_SIZE": "3"}, ["data.name=imagenet"], "imagenet"),
    "unknown model": ({"WORLD_SIZE": "3"}, ["model=resnet"], "Could not find 'model/resnet'"),
    "model vs images": ({"WORLD_SIZE": "3"}, ["model=cifar10_cnn"], "model cifar10_cnn expects"),
    "missing mnist": ({"WORLD_SIZE": "3"}, ["data=mnist", "data.root=nowhere"], "train-images-idx3-ubyte"),
    # A choice outside its enum is refused as the trainer's command line (Hydra) refuses it.
    "bad loss": (
        {"WORLD_SIZE": "3"},
        ["gan.loss=wasserstein"],
        "gan.loss=wasserstein\nInvalid value 'wasserstein', expected one of [non_saturating, saturating]",
    ),
    "bad conditioning": (
        {"WORLD_SIZE": "3"},
        ["gan.conditioning=twin"],
        "Invalid value 'twin', expected one of [acgan, projection]\n    full_key: gan.conditioning",
    ),
    "bad split": ({}, ["data.split=shuffle"], "Invalid value 'shuffle', expected one of [iid, dirichlet, classes]"),
    "bad device": ({}, ["train.device=tpu"], "Invalid value 'tpu', expected one of [auto, cuda, cpu]"),
    "bad backend": ({}, ["comm.backend=mpi"], "Invalid value 'mpi', expected one of [auto, gloo, nccl]"),
    "bad existing run": (
        {},
        ["run.existing=overwrite"],
        "Invalid value 'overwrite', expected one of [refuse, move_aside]",
    ),
    "wrong type": ({"WORLD_SIZE": "3"}, ["train.iterations=many"], "train.iterations"),
    "nccl without gpus": ({"WORLD_SIZE": "3"}, ["comm.backend=nccl"], "comm.backend=nccl needs one GPU per rank"),
    "cuda without gpus": ({"WORLD_SIZE": "3"}, ["train.device=cuda"], "train.device=cuda but no GPU is visible"),
    "bad precision": (
        {"WORLD_SIZE": "3"},
        ["train.precision=fp8"],
        "Invalid value 'fp8', expected one of [float32, bf16]",
    ),
    "zero threads": ({}, ["algorithm=standalone", "train.threads=0"], "train.threads=0: must be >= 1"),
    "bad wire dtype": (
        {"WORLD_SIZE": "3"},
        ["comm.dtype=int8"],
        "Invalid value 'int8', expected one of [float32, bfloat16, float16]",
    ),
    "quorum above N": ({"WORLD_SIZE": "3"}, ["mdgan.quorum=3"], "mdgan.quorum=3 is outside 1..N with N=2"),
    "quorum with overlap": (
        {"WORLD_SIZE": "4"},
        ["mdgan.quorum=2", "mdgan.overlap=true"],
        "mdgan.quorum below N cannot be combined with mdgan.overlap",
    ),
    "overlap with lost workers": (
        {"WORLD_SIZE": "3"},
        ["mdgan.overlap=true", "fault.tolerate_worker_loss=true"],
        "mdgan.overlap cannot be combined with fault.tolerate_worker_loss",
    ),
    "overlap for flgan": (
        {"WORLD_SIZE": "3"},
        ["algorithm=flgan", "mdgan.overlap=true"],
        "mdgan.overlap=true with algorithm=flgan: flgan does not read mdgan.*",
    ),
    "bad slow point": ({"WORLD_SIZE": "3"}, ["fault.slow_worker=1@soon"], "expected RANK@SECONDS"),
    "bad on_error": (
        {"WORLD_SIZE": "3"},
        ["checkpoint.on_error=maybe"],
        "Invalid value 'maybe', expected one of [stop, warn]",
    ),
    "nan point beyond flgan's workers": (
        {"WORLD_SIZE": "3"},
        ["algorithm=flgan", "fault.nan_worker=3@3"],
        "expected RANK@ITERATION with a worker rank in 1..2",
    ),
    "checkpoint error beyond standalone's one process": (
        {},
        ["algorithm=standalone", "fault.checkpoint_error=1@4"],
        "expected RANK@ITERATION with a rank in 0..0 (0: the server)",
    ),
    "bad checkpoint error point": (
        {"WORLD_SIZE": "3"},
        ["fault.checkpoint_error=3@4"],
        "expected RANK@ITERATION with a rank in 0..2 (0: the server)",
    ),
    "flgan never averaging": (
        {"WORLD_SIZE": "3"},
        ["algorithm=flgan", "flgan.sync_every_epochs=0"],
        "flgan.sync_every_epochs=0.0: must be > 0",
    ),
    "negative swap period": (
        {"WORLD_SIZE": "3"},
        ["mdgan.swap_every_epochs=-1"],
        "mdgan.swap_every_epochs=-1.0: must be >= 0",
    ),
    "no workers per rank": (
        {"WORLD_SIZE": "3"},
        ["mdgan.workers_per_rank=0"],
        "mdgan.workers_per_rank=0: must be >= 1",
    ),
    "k above N of several per rank": (
        {"WORLD_SIZE": "3"},
        ["mdgan.workers_per_rank=2", "mdgan.k=5"],
        "mdgan.k=5 is outside 1..N with N=4 workers",
    ),
    "quorum with several per rank": (
        {"WORLD_SIZE": "3"},
        ["mdgan.workers_per_rank=2", "mdgan.quorum=4"],
        "mdgan.quorum cannot be combined with mdgan.workers_per_rank > 1",
    ),
    "several per rank for flgan": (
        {"WORLD_SIZE": "3"},
        ["algorithm=flgan", "mdgan.workers_per_rank=2"],
        "mdgan.workers_per_rank=2 with algorithm=flgan: flgan does not read mdgan.*",
    ),
    "bad kill point": (
        {"WORLD_SIZE": "3"},
        ["fault.kill_worker=5@3"],
        "expected RANK@ITERATION with a worker rank in 1..2",
    ),
    "bad entry in a kill schedule": (
        {"WORLD_SIZE": "4"},
        ["fault.kill_worker=[1@3,4@5]"],
        "expected RANK@ITERATION with a worker rank in 1..3",
    ),
    "unknown aggregation rule": (
        {"WORLD_SIZE": "3"},
        ["mdgan.aggregate=krum"],
        "Invalid value 'krum', expected one of [mean, class_aware, forgiving, median, trimmed_mean, clipped, "
        "geometric_median]\n"
        "    full_key: mdgan.aggregate",
    ),
    "a rule that needs labels, unconditional": (
        {"WORLD_SIZE": "3"},
        ["mdgan.aggregate=class_aware", "model.conditional=false"],
        "mdgan.aggregate=class_aware needs the classes the samples were generated for, and the model is "
        "unconditional: set model.conditional=true, or use mean or forgiving",
    ),
    "a rule that needs judges, one per sample": (
        {"WORLD_SIZE": "4"},
        ["mdgan.aggregate=forgiving", "mdgan.k=2"],
        "needs 2 judges per sample, but with N=3 workers and mdgan.k=2 a sample has 1: set mdgan.k to at most 1",
    ),
    "a robust rule with two judges per sample": (
        {"WORLD_SIZE": "5"},
        ["mdgan.aggregate=median", "mdgan.k=2"],
        "mdgan.aggregate=median compares the judges of each generated sample and needs 3 judges per sample, but "
        "with N=4 workers and mdgan.k=2 a sample has 2: set mdgan.k to at most 1",
    ),
    "a geometric median of two judges (any point between them is one)": (
        {"WORLD_SIZE": "5"},
        ["mdgan.aggregate=geometric_median"],
        "mdgan.aggregate=geometric_median compares the judges of each generated sample and needs 3 judges per "
        "sample, but with N=4 workers and mdgan.k=2 a sample has 2: set mdgan.k to at most 1",
    ),
    "a trimmed mean that trims every judge": (
        {"WORLD_SIZE": "5"},
        ["mdgan.aggregate=trimmed_mean", "mdgan.k=1", "mdgan.trim=2"],
        "needs 5 judges per sample, but with N=4 workers and mdgan.k=1 a sample has 4: use at least 5 workers",
    ),
    "trim with another rule": (
        {"WORLD_SIZE": "5"},
        ["mdgan.trim=2"],
        "mdgan.trim=2 applies to mdgan.aggregate=trimmed_mean only, not mean: remove it",
    ),
    "an outlier watch with two judges per sample": (
        {"WORLD_SIZE": "5"},
        ["mdgan.outlier_iterations=5"],
        "mdgan.outlier_iterations compares each judge with the median of a sample's and needs 3 judges per "
        "sample, but with N=4 workers and mdgan.k=2 a sample has 2: set mdgan.k to at most 1",
    ),
    "a negative outlier streak": (
        {"WORLD_SIZE": "5"},
        ["mdgan.outlier_iterations=-1", "mdgan.k=1"],
        "mdgan.outlier_iterations=-1: must be >= 0",
    ),
    "a lie of unknown kind": (
        {"WORLD_SIZE": "3"},
        ["fault.byzantine_worker=1@lie"],
        "fault.byzantine_worker=1@lie: expected RANK@MODE (every worker of the process) or RANK:SLOT@MODE (one "
        "of its 1 workers, slots from 0) with a worker rank in 1..2 and a mode among noise, negate, amplify, "
        "reverse, lazy, untrained, e.g. fault.byzantine_worker=[2@negate,3@lazy]",
    ),
    "a liar in a slot its process does not have": (
        {"WORLD_SIZE": "3"},
        ["mdgan.workers_per_rank=2", "fault.byzantine_worker=2:2@negate"],
        "RANK:SLOT@MODE (one of its 2 workers, slots from 0) with a worker rank in 1..2",
    ),
    "a liar named twice": (
        {"WORLD_SIZE": "3"},
        ["mdgan.workers_per_rank=2", "fault.byzantine_worker=[1@negate,1:1@lazy]"],
        "the worker in rank 1, slot 1 is named twice; a worker lies one way",
    ),
    "lying workers for flgan": (
        {"WORLD_SIZE": "3"},
        ["algorithm=flgan", "fault.byzantine_worker=1@negate"],
        "fault.byzantine_worker=1@negate with algorithm=flgan: flgan does not read fault.byzantine_worker",
    ),
    "a class no judge of a batch holds": (
        {"WORLD_SIZE": "11"},
        ["mdgan.aggregate=class_aware", "data.split=classes", "train.batch_size=16"],
        "so those samples would have no judge that saw their class: set mdgan.k=1",
    ),
    "aggregation rule for flgan": (
        {"WORLD_SIZE": "3"},
        ["algorithm=flgan", "mdgan.aggregate=forgiving"],
        "mdgan.aggregate=forgiving with algorithm=flgan: flgan does not read mdgan.*",
    ),
    # privacy.*: each bad value, the options its accounting or its scope exclude, and the budget.
    "privacy with a zero noise multiplier": (
        {"WORLD_SIZE": "3"},
        ["privacy.epsilon=1", "privacy.noise_multiplier=0"],
        "privacy.noise_multiplier=0.0: must be > 0, or null to have it computed from privacy.epsilon",
    ),
    "privacy with a negative noise multiplier": (
        {"WORLD_SIZE": "3"},
        ["privacy.epsilon=1", "privacy.noise_multiplier=-1"],
        "privacy.noise_multiplier=-1.0: must be > 0",
    ),
    "privacy with epsilon 0": ({"WORLD_SIZE": "3"}, ["privacy.epsilon=0"], "privacy.epsilon=0.0: must be > 0"),
    "privacy with delta 1": (
        {"WORLD_SIZE": "3"},
        ["privacy.epsilon=1", "privacy.delta=1"],
        "privacy.delta=1.0: must be in (0, 1)",
    ),
    "privacy with no clipping": (
        {"WORLD_SIZE": "3"},
        ["privacy.epsilon=1", "privacy.clip=0"],
        "privacy.clip=0.0: the clipping norm must be > 0",
    ),
    "privacy with a real batch reused": (
        {"WORLD_SIZE": "3"},
        ["privacy.epsilon=1", "gan.reuse_real_batch=true", "gan.disc_steps=2"],
        "privacy cannot be combined with gan.reuse_real_batch",
    ),
    "privacy with R1": (
        {"WORLD_SIZE": "3"},
        ["privacy.epsilon=1", "gan.r1=1"],
        "privacy cannot be combined with gan.r1",
    ),
    "privacy with class-aware judging": (
        {"WORLD_SIZE": "3"},
        ["privacy.epsilon=1", "mdgan.aggregate=class_aware"],
        "privacy cannot be combined with mdgan.aggregate=class_aware: it tells the server which classes",
    ),
    "privacy with augmentation": (
        {"WORLD_SIZE": "3"},
        ["privacy.epsilon=1", "gan.augment=translation"],
        "privacy cannot be combined with gan.augment='translation': its draws come from a stream seeded by",
    ),
    "privacy with minibatch discrimination": (
        {"WORLD_SIZE": "3"},
        ["privacy.epsilon=1", "model=mnist_cnn"],
        "privacy cannot be combined with model=mnist_cnn: its D compares each sample with the rest of its batch",
    ),
    "privacy with a negative redo budget": (
        {"WORLD_SIZE": "3"},
        ["privacy.epsilon=1", "privacy.redo_iterations=-1"],
        "privacy.redo_iterations=-1: the iterations resumes may run again, >= 0",
    ),
    "privacy resumed from another run's checkpoint": (
        {"WORLD_SIZE": "3"},
        ["privacy.epsilon=1", "resume=elsewhere/checkpoints/iteration_00000004"],
        "privacy with resume=elsewhere/checkpoints/iteration_00000004: a private run resumes only from a checkpoint",
    ),
    "privacy for flgan": (
        {"WORLD_SIZE": "3"},
        ["algorithm=flgan", "privacy.epsilon=1"],
        "privacy.epsilon=1.0 with algorithm=flgan: flgan does not read privacy.*",
    ),
    "privacy with delta above 1 / n": (
        {"WORLD_SIZE": "3"},
        ["privacy.epsilon=1", "privacy.delta=0.001"],
        "privacy.delta=0.001 is not below 1 / 2250, the largest shard's size",
    ),
    "privacy with too little noise for its epsilon": (
        {"WORLD_SIZE": "3"},
        ["privacy.epsilon=1", "privacy.noise_multiplier=0.5", "train.iterations=3000"],
        "privacy.noise_multiplier=0.5 spends epsilon=",  # replaced-record DP, 3000 + 0 iterations
    ),
    # data.clusters: how many, for which model, and the options that need the classes before training
    # or would release the clusters' sums without noise.
    "one cluster": (
        {"WORLD_SIZE": "3"},
        ["data.clusters=1"],
        "data.clusters=1: 0 (the dataset's labels) or at least 2",
    ),
    "clusters for an unconditional model": (
        {},
        ["algorithm=standalone", "data.clusters=10", "model.conditional=false"],
        "data.clusters=10 labels the images for a conditional model: set model.conditional=true, or data.clusters=0",
    ),
    "clusters with class_aware": (
        {"WORLD_SIZE": "3"},
        ["data.clusters=10", "mdgan.aggregate=class_aware", "mdgan.k=1"],
        "with data.clusters the classes are known only once the workers agreed on them",
    ),
    "clusters with privacy": (
        {"WORLD_SIZE": "3"},
        ["data.clusters=10", "privacy.epsilon=8"],
        "privacy cannot be combined with data.clusters: the server learns each worker's per-cluster sums",
    ),
    "more clusters than images": (
        {},
        ["algorithm=standalone", "data.clusters=5000"],
        "data.clusters=5000: more clusters than the 4500 training images",
    ),
    "a worker killed twice": (
        {"WORLD_SIZE": "4"},
        ["fault.kill_worker=[2@3,2@5]"],
        "rank 2 is named twice",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_error_is_reported_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    launcher, overrides, message = CASES[case]
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in launcher.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # relative paths (eval.classifier_dir=empty, data.root=nowhere) resolve here
    with pytest.raises(ConfigError, match=re.escape(message)):
        checked_config([*TINY, *overrides])


# A data check, the last kind before the process group, and a Hydra composition error.
@pytest.mark.parametrize(("case", "code"), [("batch above shard", 2), ("unknown dataset", 1)])
def test_the_trainer_exits_with_the_message_and_no_traceback(tmp_path: Path, case: str, code: int) -> None:
    launcher, overrides, message = CASES[case]
    env = {key: value for key, value in os.environ.items() if key not in LAUNCHER_VARIABLES}
    env.update(launcher, RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="1")  # port 1: must never be used
    result = subprocess.run(
        [sys.executable, "-m", "mdgan_dist.train", *TINY, *overrides, f"run.dir={tmp_path / 'run'}"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert message in output, output
    assert "Traceback" not in output
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_worker_with_another_config_fails_on_every_rank(tmp_path: Path) -> None:
    job = train_job(tmp_path, 3, [*TINY, "train.iterations=5"], rank_overrides={2: ["gan.disc_steps=2"]})
    codes = job.wait(90)
    assert codes == [2, 2, 2], job.outputs()
    for rank in job.ranks:
        assert "worker rank 2 was started with a configuration that differs from the server's" in rank.output
    assert not (tmp_path / "run" / "generator.pt").exists()


def test_console_script_is_the_same_entry_point(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "mdgan-train"
    result = subprocess.run([str(script), "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "name: mnist5k" in result.stdout and "disc_steps: 1" in result.stdout


@pytest.mark.parametrize(
    ("dtype", "classes", "refused"),
    [("bfloat16", 256, False), ("bfloat16", 257, True), ("float16", 2049, True), ("float32", 2049, False)],
)
def test_acgan_labels_must_be_exact_on_the_wire(dtype: str, classes: int, refused: bool) -> None:
    cfg = Config(model=ModelConfig(conditional=True), comm=CommConfig(dtype=dtype))
    if refused:
        with pytest.raises(ConfigError, match=f"comm.dtype={dtype} holds class labels exactly only up to"):
            validate_wire_labels(cfg, classes)
    else:
        validate_wire_labels(cfg, classes)


def test_fault_specs_become_one_plan_per_rank() -> None:
    faults = [
        "fault.kill_worker=[2@3,4@5]",
        "fault.slow_worker=1@0.5",
        "fault.nan_worker=3@2",
        "fault.checkpoint_error=0@4",
    ]
    _, plan = validate(compose([*TINY, *faults]), 5)
    assert plan == FaultPlan(kills={2: 3, 4: 5}, slow={1: 0.5}, nans={3: 2}, checkpoint_errors={0: 4})
    assert validate(compose([*TINY, "fault.kill_worker=3@7"]), 5)[1] == FaultPlan(kills={3: 7})
    assert validate(compose(TINY), 5)[1] == FaultPlan()


def test_only_the_fault_plan_reads_the_fault_specs() -> None:
    """The roles read the parsed plan: a second reading of the text would be a second parser to keep in step."""
    specs = {"kill_worker", "slow_worker", "nan_worker", "checkpoint_error"}
    source = Path(__file__).resolve().parents[1] / "src" / "mdgan_dist"
    for path in source.rglob("*.py"):
        if path.name != "fault_plan.py":
            read = {node.attr for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Attribute)}
            assert not read & specs, f"{path.relative_to(source)} reads fault.{', fault.'.join(sorted(read & specs))}"


# Each algorithm's options set to their defaults, as the presets that compare algorithms do: accepted
# by every algorithm, whichever reads them.
DEFAULTS_OF_OTHERS = [
    "mdgan.swap_every_epochs=1",
    "mdgan.k=null",
    "mdgan.aggregate=mean",
    "flgan.sync_every_epochs=1",
    "fault.tolerate_worker_loss=false",
    "fault.kill_worker=null",
    "fault.slow_worker=null",
]


@pytest.mark.parametrize(("algorithm", "world_size"), [("mdgan", 3), ("flgan", 3), ("standalone", 1)])
def test_an_option_at_its_default_is_accepted_by_any_algorithm(algorithm: str, world_size: int) -> None:
    cfg = compose([*TINY, f"algorithm={algorithm}", *DEFAULTS_OF_OTHERS])
    assert validate(cfg, world_size)[0] is ALGORITHMS[algorithm]
