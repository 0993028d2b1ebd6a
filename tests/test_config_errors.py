"""Bad configs and missing files are reported before training, by every rank, with what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mdgan_dist.config import CommConfig, Config, ModelConfig, validate_wire_labels
from mdgan_dist.errors import ConfigError
from multiproc import TINY, train_job

# (launcher environment, overrides, exit code, text the message must contain)
CASES = {
    "one process": ({}, [], 2, "algorithm=mdgan needs at least 2 processes"),
    "standalone in a group": ({"WORLD_SIZE": "3"}, ["algorithm=standalone"], 2, "algorithm=standalone runs in one"),
    "unknown algorithm": ({"WORLD_SIZE": "3"}, ["algorithm=gossip"], 2, "algorithm='gossip' is not one of"),
    "faults of flgan": ({"WORLD_SIZE": "3"}, ["algorithm=flgan", "fault.kill_worker=1@3"], 2, "are MD-GAN's"),
    "no classifier": (
        {"WORLD_SIZE": "3"},
        ["eval.every=5", "eval.classifier_dir=empty"],
        2,
        "mdgan-eval train-classifier data=mnist5k",
    ),
    "classes left out": ({"WORLD_SIZE": "3"}, ["data.split=classes"], 2, "covers only 4 of 10 classes"),
    "k above N": ({"WORLD_SIZE": "3"}, ["mdgan.k=3"], 2, "mdgan.k=3 is outside 1..N with N=2 workers"),
    "batch above shard": ({"WORLD_SIZE": "3"}, ["train.batch_size=3000"], 2, "larger than the shard of worker"),
    "unknown dataset": ({"WORLD_SIZE": "3"}, ["data=imagenet"], 1, "Could not find 'data/imagenet'"),
    "unknown dataset name": ({"WORLD_SIZE": "3"}, ["data.name=imagenet"], 2, "imagenet"),
    "unknown model": ({"WORLD_SIZE": "3"}, ["model=resnet"], 1, "Could not find 'model/resnet'"),
    "model vs images": ({"WORLD_SIZE": "3"}, ["model=cifar10_cnn"], 2, "model cifar10_cnn expects"),
    "missing mnist": ({"WORLD_SIZE": "3"}, ["data=mnist", "data.root=nowhere"], 2, "train-images-idx3-ubyte"),
    "bad loss": ({"WORLD_SIZE": "3"}, ["gan.loss=wasserstein"], 2, "gan.loss='wasserstein' is not one of"),
    "wrong type": ({"WORLD_SIZE": "3"}, ["train.iterations=many"], 1, "train.iterations"),
    "nccl without gpus": ({"WORLD_SIZE": "3"}, ["comm.backend=nccl"], 2, "comm.backend=nccl needs one GPU per rank"),
    "cuda without gpus": ({"WORLD_SIZE": "3"}, ["train.device=cuda"], 2, "train.device=cuda but no GPU is visible"),
    "bad precision": ({"WORLD_SIZE": "3"}, ["train.precision=fp8"], 2, "train.precision='fp8' is not one of"),
    "zero threads": ({}, ["algorithm=standalone", "train.threads=0"], 2, "train.threads=0: must be >= 1"),
    "bad wire dtype": ({"WORLD_SIZE": "3"}, ["comm.dtype=int8"], 2, "comm.dtype='int8' is not one of"),
    "quorum above N": ({"WORLD_SIZE": "3"}, ["mdgan.quorum=3"], 2, "mdgan.quorum=3 is outside 1..N with N=2"),
    "quorum with overlap": (
        {"WORLD_SIZE": "4"},
        ["mdgan.quorum=2", "mdgan.overlap=true"],
        2,
        "mdgan.quorum below N cannot be combined with mdgan.overlap",
    ),
    "overlap with lost workers": (
        {"WORLD_SIZE": "3"},
        ["mdgan.overlap=true", "fault.tolerate_worker_loss=true"],
        2,
        "mdgan.overlap cannot be combined with fault.tolerate_worker_loss",
    ),
    "overlap for flgan": ({"WORLD_SIZE": "3"}, ["algorithm=flgan", "mdgan.overlap=true"], 2, "are MD-GAN's, not flgan"),
    "bad slow point": ({"WORLD_SIZE": "3"}, ["fault.slow_worker=1@soon"], 2, "expected RANK@SECONDS"),
    "bad kill point": (
        {"WORLD_SIZE": "3"},
        ["fault.kill_worker=5@3"],
        2,
        "expected RANK@ITERATION with a worker rank in 1..2",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_error_is_reported_before_training(tmp_path: Path, case: str) -> None:
    launcher, overrides, code, message = CASES[case]
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")}
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
