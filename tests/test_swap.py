"""Discriminator swap over real gloo messages: every D moves exactly once, along a derangement."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from multiproc import Job

PROBE = Path(__file__).parent / "procs" / "swap_probe.py"
WORKERS = 4


@pytest.mark.parametrize("with_optimizer", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_swap_moves_every_discriminator_exactly_once(tmp_path: Path, with_optimizer: bool) -> None:
    job = Job(tmp_path, WORKERS, [sys.executable, str(PROBE)], [str(tmp_path), str(with_optimizer).lower()])
    assert job.wait(120) == [0] * WORKERS, job.outputs()
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORKERS)]
    targets, params = results[0]["targets"], results[0]["params"]
    assert sorted(targets) == list(range(WORKERS)) and all(t != n for n, t in enumerate(targets))
    befores = [r["before"] for r in results]
    afters = [r["after"] for r in results]
    # Distinct to start with, or "moved" could not be told from "kept".
    assert all(not torch.equal(befores[a], befores[b]) for a in range(WORKERS) for b in range(a))
    for sender, target in enumerate(targets):
        assert results[target]["arrived"] == sender  # the header says whose D it is
        assert torch.equal(afters[target][:params], befores[sender][:params]), f"D of worker {sender} lost"
        kept_optimizer = befores[target][params:]
        moved_optimizer = befores[sender][params:]
        assert torch.equal(afters[target][params:], moved_optimizer if with_optimizer else kept_optimizer)
    # Nothing lost or duplicated: the multiset of discriminators is unchanged.
    assert sorted(a[:params].sum().item() for a in afters) == sorted(b[:params].sum().item() for b in befores)
    # Bytes: the flat state (|theta|, or |theta| + Adam's 2|theta| + one step per tensor) plus a header.
    sent_values = befores[0].numel() if with_optimizer else params
    assert all(r["bytes_sent"] == r["bytes_recv"] == sent_values * 4 + 64 for r in results)
    if with_optimizer:
        assert 3 * params <= sent_values <= 3 * params + 64
