"""The network section's model of an iteration (bench/sections/network.py) on hand-made records:
compute from the job's own timings, wire = the server's bytes x 8 / rate, model = compute + wire,
and the measured time against it. No link, no job: arithmetic only."""

from __future__ import annotations

import pytest

from jobs import Result, Spec
from mdgan_dist.config import Config
from sections.network import Case, row

RATE = 10**8  # 100 Mbit/s


def job(algorithm: str, records: list[dict]) -> Result:
    """A finished job's read-back with these records: ten of them, so the warm-up drops the first."""
    return Result(Spec(algorithm, 4), [], Config(), records, {}, 1.0, 1, "links, 100 Mbit/s")


def mdgan_record(iteration_seconds: float, worker: float, ahead: float = 0.0) -> dict:
    return {
        "iteration_seconds": iteration_seconds,
        "time_generate": 0.002,
        "time_backward": 0.008,
        "time_worker_max": worker,
        "time_worker_ahead": ahead,
        "server_bytes_sent": 1_000_000,
        "server_bytes_recv": 250_000,
    }


def test_mdgan_model_is_the_server_and_slowest_worker_compute_plus_the_server_bytes_over_the_rate() -> None:
    # The first record is the warm-up (left out); 9 alike after it. The real half computed ahead
    # overlaps the server's compute: it is not on the path the model adds up.
    records = [mdgan_record(9.0, 5.0)] + [mdgan_record(0.15, 0.030, ahead=0.004)] * 9
    figures = row(Case("MD-GAN", "mdgan"), "100 Mbit/s", RATE, 95e6, [job("mdgan", records)] * 2, 0)
    compute = 0.002 + 0.008 + 0.030
    wire = 1_250_000 * 8 / RATE  # 0.1 s
    assert figures["compute_seconds"] == pytest.approx(compute)
    assert figures["server_bytes"] == 1_250_000
    assert figures["wire_seconds"] == pytest.approx(wire)
    assert figures["model_seconds"] == pytest.approx(compute + wire)
    assert figures["over_model"] == pytest.approx(0.15 / (compute + wire))
    # Pipelined: all it sends, then the last of the 4 worker processes' feedback (a quarter of it).
    path = (1_000_000 + 250_000 / 4) * 8 / RATE
    assert figures["pipelined_seconds"] == pytest.approx(compute + path)
    assert figures["over_pipelined"] == pytest.approx(0.15 / (compute + path))
    assert figures["wall_min"] == figures["wall_max"] == pytest.approx(0.15)


def test_flgan_compute_is_its_iterations_without_an_averaging_and_its_wall_the_mean_of_all() -> None:
    # Every iteration 0.1 s and 100 bytes, but the 5th timed one averages: 2.1 s and 10 MB.
    plain = {"iteration_seconds": 0.1, "server_bytes_sent": 50, "server_bytes_recv": 50}
    records = [{**plain, "syncs": 0}] * 5 + [
        {"iteration_seconds": 2.1, "server_bytes_sent": 5_000_000, "server_bytes_recv": 5_000_000, "syncs": 1}
    ]
    records += [{**plain, "syncs": 1}] * 4
    figures = row(Case("FL-GAN", "flgan"), "100 Mbit/s", RATE, 95e6, [job("flgan", records)], 0)
    timed = records[1:]  # the warm-up leaves out the first of 10
    assert figures["averagings"] == 1
    assert figures["compute_seconds"] == pytest.approx(0.1)  # the averaging's iteration left out
    assert figures["wall_seconds"] == pytest.approx(sum(r["iteration_seconds"] for r in timed) / len(timed))
    sent = sum(r["server_bytes_sent"] + r["server_bytes_recv"] for r in timed) / len(timed)
    assert figures["server_bytes"] == pytest.approx(sent)
    assert figures["model_seconds"] == pytest.approx(0.1 + sent * 8 / RATE)
    assert figures["pipelined_seconds"] == pytest.approx(figures["model_seconds"])  # an averaging waits for all


def test_an_unshaped_link_has_no_wire_time_in_the_model() -> None:
    records = [mdgan_record(0.05, 0.030)] * 10
    figures = row(Case("MD-GAN", "mdgan"), "unshaped", None, 10e9, [job("mdgan", records)], None)
    assert figures["wire_seconds"] is None
    assert figures["model_seconds"] == pytest.approx(figures["compute_seconds"]) == pytest.approx(0.040)
