"""The paper's baselines in the same harness: the standalone GAN is MD-GAN with one worker, and
FL-GAN's averaging is exact."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import load_config
from mdgan_dist.algorithms.components import make_generator
from mdgan_dist.algorithms.ema import average_of, final_generator
from mdgan_dist.algorithms.local import LocalGAN
from mdgan_dist.config import Config
from mdgan_dist.data import load_shard
from mdgan_dist.job import plan_data
from mdgan_dist.resources import one_intra_op_thread
from mdgan_dist.seeding import generator
from multiproc import TINY, TRAIN, Job, metrics, run_job

pytestmark = pytest.mark.slow

ITERATIONS = 6
CPU = torch.device("cpu")


def run_standalone(tmp: Path, overrides: list[str]) -> Path:
    """algorithm=standalone as a user starts it: one plain process, no launcher."""
    tmp.mkdir()
    job = Job(tmp, 1, TRAIN, [*overrides, "algorithm=standalone", f"run.dir={tmp / 'run'}"])
    assert job.wait(120) == [0], job.outputs()
    return tmp / "run"


def run_distributed(tmp: Path, world_size: int, overrides: list[str]) -> Path:
    tmp.mkdir()
    return run_job(tmp, world_size, overrides)


def assert_close_states(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6, msg=lambda found: f"{what} {name}: {found}")  # noqa: B023 -- called in this iteration


def assert_moved(cfg: Config, final_generator: dict) -> None:
    """Equal results prove nothing if training left G where it started."""
    initial = make_generator(cfg, (1, 28, 28), 10).state_dict()
    assert any(not torch.equal(initial[name], value) for name, value in final_generator.items())


@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
def test_standalone_equals_mdgan_with_one_worker(tmp_path: Path, conditional: bool) -> None:
    """N = 1, k = 1, L = 1: the same seeds and the same step code give the same G and D, the
    augmentation's draws included."""
    conditioning = f"model.conditional={str(conditional).lower()}"
    common = [*TINY, f"train.iterations={ITERATIONS}", conditioning, "log.every=1", "gan.augment='translation,cutout'"]
    mdgan = run_distributed(tmp_path / "mdgan", 2, [*common, "mdgan.k=1"])
    standalone = run_standalone(tmp_path / "standalone", common)
    got, want = torch.load(standalone / "generator.pt"), torch.load(mdgan / "generator.pt")
    assert sorted(got) == sorted(want) == ["generator", "iteration", "raw_generator"]
    for key in ("generator", "raw_generator"):  # the moving average of G, and G
        assert_close_states(got[key], want[key], key)
    got_g = got["raw_generator"]
    got_d = torch.load(standalone / "discriminator.pt")["discriminator"]
    assert_close_states(got_d, torch.load(mdgan / "discriminator_rank1.pt")["discriminators"][0], "discriminator")
    assert_moved(load_config(standalone), got_g)
    losses = [r[name] for r in metrics(standalone) for name in ("d_loss", "g_loss")]
    assert losses == pytest.approx([r[name] for r in metrics(mdgan) for name in ("d_loss", "g_loss")], rel=1e-5)


def reference_flgan(cfg: Config, num_workers: int, iterations: int) -> tuple[dict, dict, int]:
    """FL-GAN in one process: every worker's local GAN, then a shard-size-weighted mean of G and
    D, computed here from the definition. Returns what the server's generator.pt holds (the
    averaged G and the moving average of the server's G over the iterations), the averaged D
    state and the count of the periodic averagings."""
    plan = plan_data(cfg, num_workers)
    sizes = plan.shard_sizes
    assert len(set(sizes)) > 1, "unequal shards, or the weights are not tested"
    gans = [
        LocalGAN(
            cfg,
            plan.image_shape,
            plan.num_classes,
            load_shard(plan.train, plan.shards[n]),
            n,
            generator(cfg.train.seed, "noise", n),
            CPU,
        )
        for n in range(num_workers)
    ]
    period = max(1, math.ceil(sum(sizes) / num_workers * cfg.flgan.sync_every_epochs / cfg.train.batch_size))
    server_g = make_generator(cfg, plan.image_shape, plan.num_classes)  # the initial G, until the first sync
    average = average_of(server_g, cfg.gan.ema_halflife)

    def synchronise() -> None:
        for part in ("generator", "discriminator"):
            states = [getattr(gan, part).state_dict() for gan in gans]
            assert not torch.equal(states[0][next(iter(states[0]))], states[1][next(iter(states[1]))])
            for name, value in states[0].items():
                if value.is_floating_point():
                    mean = sum(state[name].double() * size for state, size in zip(states, sizes)) / sum(sizes)
                    for state in states:
                        state[name].copy_(mean)
        # The server takes the average of the floating-point state; its own counters stay.
        averaged = gans[0].generator.state_dict()
        for name, value in server_g.state_dict().items():
            if value.is_floating_point():
                value.copy_(averaged[name])

    syncs = 0
    for iteration in range(iterations):
        for gan in gans:
            gan.iteration(iteration)
        if (iteration + 1) % period == 0:
            synchronise()
            syncs += 1
        average.update(server_g, iteration + 1)
    # The run ends with an averaging, after the moving average took its last iteration in.
    assert iterations % period, "the final averaging is not tested"
    synchronise()
    return final_generator(server_g, average, iterations), gans[0].discriminator.state_dict(), syncs


@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
def test_flgan_averaging_is_exact(tmp_path: Path, conditional: bool) -> None:
    """After every sync the server and all workers hold the same G and D, equal to the weighted
    mean of the workers' pre-sync models (unequal Dirichlet shards, so the weights matter)."""
    workers, iterations = 3, 7
    overrides = [
        *TINY, "algorithm=flgan", f"train.iterations={iterations}", "log.every=1", "data.split=dirichlet",
        "data.alpha=2", "flgan.sync_every_epochs=0.05", f"model.conditional={str(conditional).lower()}",
    ]  # fmt: skip
    run_dir = run_distributed(tmp_path / "flgan", workers + 1, overrides)
    cfg = load_config(run_dir)
    with one_intra_op_thread():  # as the ranks compute
        want_g, want_d, syncs = reference_flgan(cfg, workers, iterations)
    got = torch.load(run_dir / "generator.pt")
    assert_close_states(got["generator"], want_g["generator"], "moving average of the averaged generator")
    got_g = got["raw_generator"]
    assert_close_states(got_g, want_g["raw_generator"], "averaged generator")
    got_d = torch.load(run_dir / "discriminator.pt")["discriminator"]
    assert_close_states(got_d, want_d, "averaged discriminator")
    for rank in range(1, workers + 1):  # the averaged floating-point state; counters stay local
        models = torch.load(run_dir / f"models_rank{rank}.pt")
        for part, got_state in (("generator", got_g), ("discriminator", got_d)):
            for name, value in got_state.items():
                if value.is_floating_point():
                    assert torch.equal(models[part][name], value), f"rank {rank} {part} {name}"
    assert_moved(cfg, got_g)
    records = metrics(run_dir)
    assert syncs >= 1 and records[-1]["syncs"] == syncs
    # The last averaging, after the last iteration's record, counts in the server's stats.
    assert json.loads((run_dir / "stats_rank0.json").read_text())["syncs"] == syncs + 1
    # A sync moves every worker's G and D to the server and their mean back: 2N flat models.
    model_bytes = 4 * sum(v.numel() for v in [*got_g.values(), *got_d.values()] if v.is_floating_point())
    synced = [r for r in records if r["server_bytes_recv"] > model_bytes]
    assert len(synced) == syncs
    assert all(r["server_bytes_recv"] - 64 * 2 * workers == workers * model_bytes for r in synced)
