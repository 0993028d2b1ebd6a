"""A shared or downloaded file cannot run code: every checkpoint and model file is read with
torch.load's weights_only unpickler. A planted file whose unpickling would run a command is
refused with a message naming it, and the command does not run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mdgan_dist import config
from mdgan_dist.checkpoint import load
from mdgan_dist.config import Config
from mdgan_dist.errors import ConfigError
from mdgan_dist.metrics import cli


class Planted:
    """Unpickled in full, this runs `touch <marker>`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path) -> Path:
    torch.save({"generator": Planted(marker), "iteration": 3}, path)
    return path


def test_the_planted_file_runs_its_command_when_unpickled_in_full(tmp_path: Path) -> None:
    """The control: the file is malicious, so the refusals below are worth something."""
    marker = tmp_path / "ran"
    torch.load(plant(tmp_path / "generator.pt", marker), weights_only=False)
    assert marker.exists()


def test_loading_refuses_it_and_the_command_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = plant(tmp_path / "server.pt", marker)
    with pytest.raises(ConfigError, match=r"server\.pt holds more than tensors and plain values"):
        load(path, torch.device("cpu"))
    assert not marker.exists()


def test_mdgan_eval_score_refuses_a_planted_run_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "ran"
    config.save(Config(), tmp_path / "config.yaml")
    plant(tmp_path / "generator.pt", marker)
    assert cli.run(["score", str(tmp_path)]) == 2
    assert "generator.pt holds more than tensors and plain values" in caplog.text
    assert not marker.exists()


def test_what_the_project_writes_loads_under_the_same_rules(tmp_path: Path) -> None:
    """Optimizer state, generator states and plain values: the restricted unpickler reads them."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "holds": [2, 0],
        "config": {"train": {"seed": 0}},
    }
    torch.save(state, tmp_path / "state.pt")
    loaded = load(tmp_path / "state.pt", torch.device("cpu"))
    assert loaded["holds"] == [2, 0] and torch.equal(loaded["rng"], state["rng"])
    assert loaded["optimizer"]["state"][0]["step"] == 1
