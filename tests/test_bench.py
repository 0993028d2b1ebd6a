"""bench/suite.py end to end, at its --quick size: every section is there, the byte counts equal
the analytic figures exactly, and the compute and quorum figures say what they must. No timing
is asserted: the machine may be shared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

SUITE = Path(__file__).resolve().parents[1] / "bench" / "suite.py"
SECTIONS = {"compute", "protocol", "scaling", "bytes", "memory", "optimisations"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "suite.json"
    done = subprocess.run(
        [sys.executable, str(SUITE), "--quick", "--json", str(out)],
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
    # bfloat16 halves the payload: the same N moves about half the bytes of float32.
    by = {(row["dtype"], row["workers"]): row["measured"] for row in rows if row["kind"] == "iteration"}
    n = max(workers for dtype, workers in by if dtype == "bfloat16")
    assert by[("bfloat16", n)] < 0.51 * by[("float32", n)]


@pytest.mark.timeout(900)
def test_an_mdgan_worker_computes_less_than_an_flgan_worker(report: dict) -> None:
    rows = {row["name"]: row for row in report["sections"]["compute"]["rows"]}
    assert all(row["flops"] > 0 and row["cpu_seconds"] > 0 for row in rows.values())
    assert rows["mdgan_worker"]["flops"] < rows["flgan_worker"]["flops"]


@pytest.mark.timeout(900)
def test_a_quorum_steps_on_fewer_feedbacks_than_workers(report: dict) -> None:
    rows = report["sections"]["optimisations"]["rows"]
    (quorum,) = [row for row in rows if row["variant"].startswith("mdgan.quorum=")]
    assert quorum["feedbacks_used"] < quorum["workers"]
    assert quorum["feedbacks_late"] > 0
    (waiting,) = [row for row in rows if row["variant"].startswith("quorum unset")]
    assert waiting["feedbacks_used"] == waiting["workers"]
