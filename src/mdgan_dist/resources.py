"""What a process used, written once at the end of a run: bytes moved, compute and peak memory;
and one intra-op thread for a block, as a rank of a job has its own core."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from mdgan_dist.distributed.transport import Transport


class ComputeClock:
    """The process's CPU seconds (all its threads) spent inside `with clock:` blocks: what a
    role's training compute costs, whatever else shares the cores (wall time grows with
    contention, CPU time does not)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._entered = 0.0

    def __enter__(self) -> ComputeClock:
        self._entered = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.process_time() - self._entered


def peak_memory(device: torch.device) -> dict[str, int | None]:
    """Peak resident memory of this process and, on a GPU, the peak memory torch allocated there."""
    # ru_maxrss is in kilobytes on Linux.
    stats: dict[str, int | None] = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    stats["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return stats


def write_stats(run_dir: Path, rank: int, role: str, device: torch.device, **counters: float | int | None) -> None:
    """run_dir/stats_rank{rank}.json: the role, its intra-op threads, the given counters, and
    peak memory."""
    stats = {"rank": rank, "role": role, "threads": torch.get_num_threads(), **counters, **peak_memory(device)}
    (run_dir / f"stats_rank{rank}.json").write_text(json.dumps(stats, indent=2))


def write_peer_stats(run_dir: Path, role: str, transport: Transport, **counters: float | int | None) -> None:
    """write_stats for a rank of a process group: its transport's byte totals included."""
    bytes_moved = {"bytes_sent": transport.bytes_sent, "bytes_recv": transport.bytes_recv}
    write_stats(run_dir, transport.rank, role, transport.device, **bytes_moved, **counters)


@contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """torch's intra-op threads set to 1 inside the block, restored after: compute timed or
    replayed in one process as a rank of a job with one thread does it (another thread count sums
    convolutions in another order, and Adam turns the rounding of a gradient near zero into a
    visible step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
