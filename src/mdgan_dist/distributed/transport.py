"""Point-to-point messages with finite timeouts, errors that name the peer, and byte accounting."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Sequence

import torch
import torch.distributed as dist

from mdgan_dist.distributed.protocol import HEADER_LEN, Header, Kind
from mdgan_dist.errors import PeerError

Transfer = tuple[int, torch.Tensor]  # (peer rank, tensor to send or to receive into)
UNLIMITED = timedelta(days=365)


class Limit:
    """The deadline of one protocol step: patience x comm.timeout_s from now."""

    def __init__(self, timeout_s: float, patience: int) -> None:
        self.timeout_s = timeout_s
        self.patience = patience
        self.deadline = time.monotonic() + timeout_s * patience

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def silence(self) -> str:
        times = f"{self.patience} x " if self.patience > 1 else ""
        return f"no answer within {times}comm.timeout_s={self.timeout_s:g}s"


class Transport:
    """Posts all sends and receives of one protocol step at once, then waits for each in turn.

    Posting everything before waiting is what keeps a pair of peers that both send and receive
    from deadlocking; ops are issued in sorted peer order (per peer, in the caller's order) so
    every rank sees the same sequence.
    """

    def __init__(
        self,
        rank: int,
        timeout_s: float,
        device: torch.device,
        wire: torch.device | None = None,
        isolate_peers: bool = False,
    ) -> None:
        """device: where the caller's tensors live; wire: where the backend needs them (gloo: CPU).
        isolate_peers: a silent peer must not take the others down (see _wait_apart)."""
        self.rank = rank
        self.isolate_peers = isolate_peers
        self.timeout_s = timeout_s
        self.device = device
        self.wire = wire or device
        self.bytes_sent = 0
        self.bytes_recv = 0

    def exchange(
        self,
        stage: str,
        sends: Sequence[Transfer] = (),
        recvs: Sequence[Transfer] = (),
        tolerate: bool = False,
        patience: int = 1,
    ) -> dict[int, PeerError]:
        """Posts every transfer, waits for all of them within patience x comm.timeout_s.

        Raises the first peer's failure; with tolerate, waits for every transfer and returns the
        failures by peer instead, so the caller can go on with the peers that answered.
        """
        # Tensors not on the wire device travel through a staging copy (GPU compute over gloo).
        staged_recvs = [(peer, tensor, self._on_wire(tensor)) for peer, tensor in recvs]
        ops = [(peer, dist.isend, tensor.to(self.wire)) for peer, tensor in sends]
        ops += [(peer, dist.irecv, staged) for peer, _, staged in staged_recvs]
        ops.sort(key=lambda op: op[0])  # stable: per-peer order is kept
        works = dist.batch_isend_irecv([dist.P2POp(fn, tensor, peer) for peer, fn, tensor in ops])
        by_peer: dict[int, list[dist.Work]] = {}
        for (peer, _, _), work in zip(ops, works):
            by_peer.setdefault(peer, []).append(work)
        limit = Limit(self.timeout_s, patience)
        failures = (self._wait_apart if self.isolate_peers or tolerate else self._wait_in_turn)(by_peer, stage, limit)
        for peer, tensor, staged in staged_recvs:
            if staged is not tensor and peer not in failures:
                tensor.copy_(staged)
        self.bytes_sent += sum(_nbytes(tensor) for peer, tensor in sends if peer not in failures)
        self.bytes_recv += sum(_nbytes(tensor) for peer, tensor in recvs if peer not in failures)
        if failures and not tolerate:
            raise failures[min(failures)]
        return failures

    def _wait_in_turn(self, by_peer: dict[int, list[dist.Work]], stage: str, limit: Limit) -> dict[int, PeerError]:
        for peer, works in by_peer.items():
            for work in works:
                try:
                    work.wait(timeout=timedelta(seconds=max(limit.remaining(), 0.001)))
                except RuntimeError as error:
                    raise self._failure(peer, stage, error, limit) from error
        return {}

    def _wait_apart(self, by_peer: dict[int, list[dist.Work]], stage: str, limit: Limit) -> dict[int, PeerError]:
        """One waiting thread per peer, the deadline kept here: a silent peer fails alone.

        A gloo wait that times out closes every pair of the process group ("Application timeout
        caused pair closure"), which would take the live peers down with the silent one. So each
        thread waits without a practical limit, and a peer whose thread is still waiting at the
        deadline is reported as silent; its thread stays blocked (a daemon) and is never joined.
        """
        errors: dict[int, PeerError | None] = {}

        def wait_for(peer: int, works: list[dist.Work]) -> None:
            try:
                for work in works:
                    work.wait(timeout=UNLIMITED)
                errors[peer] = None
            except RuntimeError as error:
                errors[peer] = self._failure(peer, stage, error, limit)

        threads = [threading.Thread(target=wait_for, args=item, daemon=True) for item in by_peer.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(limit.remaining(), 0.0))
        failures = {}
        for peer in by_peer:
            if peer not in errors:  # its thread is still waiting
                failures[peer] = PeerError(self.rank, peer, stage, limit.silence())
            elif errors[peer] is not None:
                failures[peer] = errors[peer]
        return failures

    def _failure(self, peer: int, stage: str, error: RuntimeError, limit: Limit) -> PeerError:
        text = str(error)
        if "timed out" in text.lower():
            return PeerError(self.rank, peer, stage, limit.silence())
        return PeerError(
            self.rank, peer, stage, f"connection lost, the peer process probably died (see its log): {text}"
        )

    def header(self, header: Header) -> torch.Tensor:
        return header.encode(torch.empty(HEADER_LEN, dtype=torch.int64, device=self.wire))

    def empty_header(self) -> torch.Tensor:
        return torch.zeros(HEADER_LEN, dtype=torch.int64, device=self.wire)

    def _on_wire(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if tensor.device == self.wire else torch.empty_like(tensor, device=self.wire)

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


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
