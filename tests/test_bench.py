"""bench/suite.py end to end, at its --quick size: every section is there, the bench's analytic
byte figures equal what its jobs measured, and the compute figures say what they must. No timing
is asserted: the machine may be shared. What the trainer sends per iteration and per swap, and
what a quorum does, test_oracle, test_swap and test_quorum check on the trainer itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mdgan_dist.algorithms.aggregation import AGGREGATIONS

pytestmark = pytest.mark.bench

SUITE = Path(__file__).resolve().parents[1] / "bench" / "suite.py"
SECTIONS = {
    "compute",
    "protocol",
    "scaling",
    "bytes",
    "memory",
    "optimisations",
    "packing",
    "guard",
    "aggregation",
    "privacy",
    "overlap",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "suite.json"
    done = subprocess.run(
        # 10 iterations a job instead of --quick's 30: no figure here needs more, and it runs 17 jobs.
        [sys.executable, str(SUITE), "--quick", "--iterations", "10", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # The markdown is printed too, ready to paste.
    assert "### Bytes: measured vs analytic" in done.stdout
    assert "Machine:" in done.stdout
    return json.loads(out.read_text())


@pytest.mark.timeout(900)
def test_every_section_is_there(report: dict) -> None:
    assert set(report["sections"]) == SECTIONS
    for section in report["sections"].values():
        assert section["rows"], section["title"]
    machine = report["machine"]
    assert machine["cpus"] >= 1 and machine["torch"] and machine["device"] == "cpu"
    assert report["jobs"] and report["total_seconds"] > 0


@pytest.mark.timeout(900)
def test_bytes_equal_the_analytic_figures_exactly(report: dict) -> None:
    rows = report["sections"]["bytes"]["rows"]
    for row in rows:
        assert row["measured"] == row["analytic"], row
    iterations = {row["dtype"] for row in rows if row["kind"] == "iteration"}
    assert iterations == {"float32", "bfloat16"}
    assert any(row["kind"] == "swap" for row in rows)
    assert any(row["kind"] == "sync" for row in rows)


@pytest.mark.timeout(900)
def test_an_mdgan_worker_computes_less_than_an_flgan_worker(report: dict) -> None:
    rows = {row["name"]: row for row in report["sections"]["compute"]["rows"]}
    assert all(row["flops"] > 0 and row["cpu_seconds"] > 0 for row in rows.values())
    assert rows["mdgan_worker"]["flops"] < rows["flgan_worker"]["flops"]


@pytest.mark.timeout(900)
def test_packing_compares_both_layouts_against_the_compute_bound(report: dict) -> None:
    section = report["sections"]["packing"]
    rows = {row["layout"]: row for row in section["rows"]}
    assert set(rows) == {"one per process", "packed"}
    assert rows["one per process"]["per_rank"] == 1 and rows["packed"]["per_rank"] > 1
    for row in rows.values():
        assert row["processes"] * row["per_rank"] == row["workers"]
        assert row["wall_min"] <= row["wall_seconds"] <= row["wall_max"]
        assert row["bound_seconds"] > 0 and row["job_memory"] > row["worker_rss"] > 0
    # Fewer processes, fewer interpreters: the packed job holds less memory.
    assert rows["packed"]["job_memory"] < rows["one per process"]["job_memory"]
    # Every job says which code it ran and on how many threads.
    for job in report["jobs"]:
        assert len(job["commit"].split("+")[0]) == 40 and job["threads"] >= 1


@pytest.mark.timeout(900)
def test_the_guard_costs_a_small_share_of_an_iteration(report: dict) -> None:
    rows = report["sections"]["guard"]["rows"]
    assert [row["role"] for row in rows] == ["worker", "server, N=4", "iteration (server + a worker)"]
    assert all(0 < row["guard_seconds"] < row["iteration_seconds"] for row in rows)


@pytest.mark.timeout(900)
def test_each_aggregation_rule_is_timed_at_n10_and_n50_with_its_extra_bytes(report: dict) -> None:
    rows = report["sections"]["aggregation"]["rows"]
    assert [(row["workers"], row["k"], row["rule"]) for row in rows] == [
        (n, k, rule) for n, k in ((10, 4), (50, 6)) for rule in AGGREGATIONS
    ]
    assert all(0 < row["rule_seconds"] < row["iteration_seconds"] for row in rows)
    b = 16  # --quick's batch size
    for row in rows:  # forgiving's verdicts: b float32 values a worker; the others add nothing per iteration
        assert row["extra_bytes"] == (row["workers"] * b * 4 if row["rule"] == "forgiving" else 0)
        assert row["iteration_bytes"] == 3 * row["workers"] * b * 28 * 28 * 4


@pytest.mark.timeout(900)
def test_private_discriminators_are_timed_beside_plain_ones(report: dict) -> None:
    rows = report["sections"]["privacy"]["rows"]
    assert [row["slots"] for row in rows] == [1, 10]
    for row in rows:
        assert row["plain_seconds"] > 0 and row["private_seconds"] > 0 and row["ratio"] > 0


@pytest.mark.timeout(900)
def test_real_halves_ahead_are_timed_off_and_on_against_a_repeated_bound(report: dict) -> None:
    rows = report["sections"]["overlap"]["rows"]
    assert [(row["setting"], row["real_ahead"]) for row in rows] == [
        (setting, ahead)
        for setting in ("paper MLP, b = 64, packed (W = 2)", "default run", "default model, packed (W = 2)")
        for ahead in (False, True)
    ]
    for row in rows:
        assert row["wall_min"] <= row["wall_seconds"] <= row["wall_max"]
        assert 0 < row["bound_min"] <= row["bound_seconds"] <= row["bound_max"]
        assert row["over_bound_min"] <= row["over_bound"] <= row["over_bound_max"]
        assert row["worker_alone_seconds"] > 0 and row["worker_busy_seconds"] > 0 and row["busy_bound_seconds"] > 0
        assert row["server_seconds"] > 0 and row["worker_seconds"] > 0
        # Every iteration but the last (the stop follows it) has its real half computed ahead.
        assert row["halves_ahead"] == (10 - 1 if row["real_ahead"] else 0)


PRESET_COST = SUITE.parent / "preset_cost.py"


@pytest.mark.timeout(300)
def test_preset_cost_adds_up_each_configurations_roles(tmp_path: Path) -> None:
    """bench/preset_cost.py on a tiny grid: MD-GAN's iteration is its server's k-batch step plus N
    workers', FL-GAN's N whole GAN iterations, and the hours follow from the iterations and cores."""
    grid = {"algorithms": ["standalone", "flgan", "mdgan"], "workers": [3], "k": [2], "batch_sizes": [16]}
    overrides = ["model.width=0.0625", "train.iterations=7200"]
    preset = tmp_path / "tiny.yaml"
    preset.write_text(json.dumps({"name": "tiny", "overrides": overrides, "grid": grid}))
    out = tmp_path / "cost.json"
    command = [sys.executable, str(PRESET_COST), str(preset), "--repetitions", "3", "--cores", "2", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "| all 3 |" in done.stdout
    report = json.loads(out.read_text())
    rows = {row["configuration"]: row for row in report["rows"]}
    assert list(rows) == ["standalone-b16", "flgan-N3-b16", "mdgan-N3-k2-b16"]
    local = rows["standalone-b16"]["compute_seconds"]
    assert rows["flgan-N3-b16"]["compute_seconds"] == pytest.approx(3 * local)
    assert rows["mdgan-N3-k2-b16"]["compute_seconds"] > 0
    for row in rows.values():
        assert row["hours_here"] == pytest.approx(7200 * row["compute_seconds"] / 2 / 3600)
        assert row["iterations_per_second"] == pytest.approx(2 / row["compute_seconds"])
        assert row["hours_one_gpu"] is None  # measured on the CPU
    (total,) = report["totals"]
    assert total["hours_here"] == pytest.approx(sum(row["hours_here"] for row in rows.values()))


@pytest.mark.timeout(300)
def test_the_gpu_section_runs_both_models_on_random_images_of_their_shape(tmp_path: Path) -> None:
    """The one-device table at --quick size, on the CPU: a row per model and N, all N workers in
    one process, each job trained on the generated image folder of its model's shape. Named only:
    the default run leaves it out."""
    out = tmp_path / "gpu.json"
    command = [sys.executable, str(SUITE), "--quick", "--iterations", "5", "--sections", "gpu"]
    done = subprocess.run(
        [*command, "--scratch", str(tmp_path / "jobs"), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert set(report["sections"]) == {"gpu"}
    rows = report["sections"]["gpu"]["rows"]
    assert [row["model"] for row in rows] == ["default model (conditional DCGAN, half width)", "paper's CIFAR10 CNN"]
    for row in rows:
        assert (row["workers"], row["processes"], row["per_rank"], row["batch"]) == (2, 1, 2, 16)
        assert row["wall_min"] <= row["wall_seconds"] <= row["wall_max"]
        assert row["server_seconds"] > 0 and row["worker_seconds"] > 0
        assert row["device_peak"] is None  # no device memory on the CPU
    for shape, size in (("1x28", (28, 28)), ("3x32", (32, 32))):
        (folder,) = (tmp_path / "jobs").glob(f"random-{shape}-*")
        images = sorted(folder.glob("class*/*.png"))
        assert len({image.parent.name for image in images}) == 10
        with Image.open(images[0]) as first:
            assert first.size == size and first.mode == ("L" if shape == "1x28" else "RGB")
    trained = [job["overrides"] for job in report["jobs"]]
    assert any("model=cifar10_cnn" in job and "data.channels=3" in job for job in trained)
