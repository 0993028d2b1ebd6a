"""Point-to-point messages with finite timeouts, errors that name the peer, and byte accounting."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Sequence

import torch
import torch.distributed as dist

from mdgan_dist.distributed.protocol import HEADER_LEN, Header, Kind
from mdgan_dist.errors import PeerError

Transfer = tuple[int, torch.Tensor]  # (peer rank, tensor to send or to receive into)


class Transport:
    """Posts all sends and receives of one protocol step at once, then waits for each in turn.

    Posting everything before waiting is what keeps a pair of peers that both send and receive
    from deadlocking; ops are issued in sorted peer order (per peer, in the caller's order) so
    every rank sees the same sequence.
    """

    def __init__(self, rank: int, timeout_s: float, device: torch.device) -> None:
        self.rank = rank
        self.timeout_s = timeout_s
        self.device = device
        self.bytes_sent = 0
        self.bytes_recv = 0

    def exchange(self, stage: str, sends: Sequence[Transfer] = (), recvs: Sequence[Transfer] = ()) -> None:
        ops = [(peer, dist.isend, tensor) for peer, tensor in sends]
        ops += [(peer, dist.irecv, tensor) for peer, tensor in recvs]
        ops.sort(key=lambda op: op[0])  # stable: per-peer order is kept
        works = dist.batch_isend_irecv([dist.P2POp(fn, tensor, peer) for peer, fn, tensor in ops])
        deadline = time.monotonic() + self.timeout_s
        for (peer, _, _), work in zip(ops, works):
            self._wait(work, peer, stage, deadline)
        self.bytes_sent += sum(_nbytes(tensor) for _, tensor in sends)
        self.bytes_recv += sum(_nbytes(tensor) for _, tensor in recvs)

    def header(self, header: Header) -> torch.Tensor:
        return header.encode(torch.empty(HEADER_LEN, dtype=torch.int64, device=self.device))

    def empty_header(self) -> torch.Tensor:
        return torch.zeros(HEADER_LEN, dtype=torch.int64, device=self.device)

    def expect(
        self, buffer: torch.Tensor, peer: int, stage: str, kinds: Sequence[Kind], iteration: int | None = None
    ) -> Header:
        """Decodes a received header and fails loudly if the peer is not where the protocol is."""
        try:
            header = Header.decode(buffer)
        except ValueError as error:
            raise PeerError(self.rank, peer, stage, f"malformed header {buffer.tolist()}") from error
        if header.kind not in kinds:
            expected = " or ".join(kind.name for kind in kinds)
            raise PeerError(self.rank, peer, stage, f"expected a {expected} message, got {header.kind.name}")
        if iteration is not None and header.iteration != iteration:
            raise PeerError(self.rank, peer, stage, f"out of step: message of iteration {header.iteration}")
        return header

    def _wait(self, work: dist.Work, peer: int, stage: str, deadline: float) -> None:
        remaining = max(deadline - time.monotonic(), 0.001)
        try:
            work.wait(timeout=timedelta(seconds=remaining))
        except RuntimeError as error:
            text = str(error)
            if "timed out" in text.lower():
                cause = f"no answer within comm.timeout_s={self.timeout_s:g}s"
            else:
                cause = f"connection lost, the peer process probably died (see its log): {text}"
            raise PeerError(self.rank, peer, stage, cause) from error


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
