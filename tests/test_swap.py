"""Discriminator swap over real gloo messages: every D moves exactly once, along a derangement,
between processes as messages and between the slots of one process in memory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from multiproc import Job

PROBE = Path(__file__).parent / "procs" / "swap_probe.py"
WORKERS = 4


@pytest.mark.parametrize(
    ("with_optimizer", "per_rank"),
    [(True, 1), pytest.param(False, 1, marks=pytest.mark.slow), (True, 2)],
)
def test_swap_moves_every_discriminator_exactly_once(tmp_path: Path, with_optimizer: bool, per_rank: int) -> None:
    processes = WORKERS // per_rank
    args = [str(tmp_path), str(with_optimizer).lower(), str(per_rank)]
    job = Job(tmp_path, processes, [sys.executable, str(PROBE)], args)
    assert job.wait(120) == [0] * processes, job.outputs()
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(processes)]
    targets, params = results[0]["targets"], results[0]["params"]
    assert sorted(targets) == list(range(WORKERS)) and all(t != n for n, t in enumerate(targets))
    befores = [state for r in results for state in r["before"]]
    afters = [state for r in results for state in r["after"]]
    arrived = [born_on for r in results for born_on in r["arrived"]]
    # Distinct to start with, or "moved" could not be told from "kept".
    assert all(not torch.equal(befores[a], befores[b]) for a in range(WORKERS) for b in range(a))
    for sender, target in enumerate(targets):
        assert arrived[target] == sender  # the header (or, in memory, the slot) says whose D it is
        assert torch.equal(afters[target][:params], befores[sender][:params]), f"D of worker {sender} lost"
        kept_optimizer = befores[target][params:]
        moved_optimizer = befores[sender][params:]
        assert torch.equal(afters[target][params:], moved_optimizer if with_optimizer else kept_optimizer)
    # Nothing lost or duplicated: the multiset of discriminators is unchanged.
    assert sorted(a[:params].sum().item() for a in afters) == sorted(b[:params].sum().item() for b in befores)
    # Bytes: per D that leaves its process, the flat state (|theta|, or |theta| + Adam's 2|theta| + one
    # step per tensor) and a header; a D that stays in its process costs nothing on the wire.
    sent_values = befores[0].numel() if with_optimizer else params
    for rank, r in enumerate(results):
        mine = range(rank * per_rank, (rank + 1) * per_rank)
        leaving = sum(targets[worker] not in mine for worker in mine)
        arriving = sum(targets.index(worker) not in mine for worker in mine)
        assert r["bytes_sent"] == leaving * (sent_values * 4 + 64)
        assert r["bytes_recv"] == arriving * (sent_values * 4 + 64)
    if per_rank > 1:  # the seed's derangement moves some D across processes and some within one
        crossing = sum(target // per_rank != worker // per_rank for worker, target in enumerate(targets))
        assert 0 < crossing < WORKERS
    if with_optimizer:
        assert 3 * params <= sent_values <= 3 * params + 64
