"""Point-to-point messages with finite timeouts, errors that name the peer, and byte accounting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from mdgan_dist.distributed.protocol import HEADER_LEN, UNWRITTEN, M, Message, ProtocolMismatch, decode
from mdgan_dist.errors import PeerError

Transfer = tuple[int, torch.Tensor]  # (peer rank, tensor to send or to receive into)
UNLIMITED = timedelta(days=365)


@dataclass
class PeerTransfers:
    """One peer's share of a posted step: its works, the staged receives to copy back, its bytes."""

    works: list[dist.Work] = field(default_factory=list)
    copies: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (destination, wire copy)
    marked: list[torch.Tensor] = field(default_factory=list)  # float receives whose last value is marked NaN
    bytes_sent: int = 0
    bytes_recv: int = 0
    messages_sent: int = 0
    messages_recv: int = 0


class Posted:
    """The transfers of one protocol step, posted and not yet all waited for."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.transfers: dict[int, PeerTransfers] = {}
        self.open: list[int] = []  # peers not yet waited for, in rank order
        # wait_any: one thread per watched peer waits for its works and reports here.
        self.arrival = threading.Condition()
        self.watched: set[int] = set()
        self.finished: dict[int, RuntimeError | None] = {}

    def of(self, peer: int) -> PeerTransfers:
        if peer not in self.transfers:
            self.transfers[peer] = PeerTransfers()
            self.open = sorted([*self.open, peer])
        return self.transfers[peer]

    def close(self, peer: int) -> None:
        self.open.remove(peer)


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
        isolate_peers: a silent peer must not take the others down (see _watch)."""
        self.rank = rank
        self.isolate_peers = isolate_peers
        self.timeout_s = timeout_s
        self.device = device
        self.wire = wire or device
        self.bytes_sent = self.bytes_recv = 0
        self.messages_sent = self.messages_recv = 0

    def exchange(
        self,
        stage: str,
        sends: Sequence[Transfer] = (),
        recvs: Sequence[Transfer] = (),
        patience: int = 1,
    ) -> None:
        """Posts every transfer, waits for all of them within patience x comm.timeout_s, and raises
        the first peer's failure. A caller that goes on without failed peers uses post() and
        wait(tolerate=True)."""
        self.wait(self.post(stage, sends, recvs), patience=patience)

    def post(self, stage: str, sends: Sequence[Transfer] = (), recvs: Sequence[Transfer] = ()) -> Posted:
        """Starts the transfers of one protocol step and returns at once; wait() completes them."""
        # Tensors not on the wire device travel through a staging copy (GPU compute over gloo).
        staged_recvs = [(peer, tensor, self._on_wire(tensor)) for peer, tensor in recvs]
        for _, _, staged in staged_recvs:
            _mark(staged)
        ops: list[tuple[int, Callable[..., dist.Work | None], torch.Tensor]]
        ops = [(peer, dist.isend, tensor.to(self.wire)) for peer, tensor in sends]
        ops += [(peer, dist.irecv, staged) for peer, _, staged in staged_recvs]
        ops.sort(key=lambda op: op[0])  # stable: per-peer order is kept
        works = dist.batch_isend_irecv([dist.P2POp(fn, tensor, peer) for peer, fn, tensor in ops]) if ops else []
        posted = Posted(stage)
        # Not strict: gloo returns one work per op, NCCL one work for the whole coalesced batch.
        for (peer, _, _), work in zip(ops, works, strict=False):
            posted.of(peer).works.append(work)
        for peer, tensor in sends:
            transfers = posted.of(peer)
            transfers.bytes_sent += _nbytes(tensor)
            transfers.messages_sent += 1
        for peer, tensor, staged in staged_recvs:
            transfers = posted.of(peer)
            transfers.bytes_recv += _nbytes(tensor)
            transfers.messages_recv += 1
            if staged is not tensor:
                transfers.copies.append((tensor, staged))
            if tensor.is_floating_point() and tensor.numel():
                transfers.marked.append(tensor)
        return posted

    def wait(self, posted: Posted, tolerate: bool = False, patience: int = 1) -> dict[int, PeerError]:
        """Waits for the posted transfers still open, within patience x comm.timeout_s.

        Raises the first peer's failure; with tolerate, waits for every transfer and returns the
        failures by peer instead, so the caller can go on with the peers that answered.
        """
        open_peers = list(posted.open)
        limit = Limit(self.timeout_s, patience)
        if self.isolate_peers or tolerate:
            failures = self._wait_apart(posted, open_peers, limit)
        else:
            failures = self._wait_in_turn(
                {peer: posted.transfers[peer].works for peer in open_peers}, posted.stage, limit
            )
        for peer in open_peers:
            posted.close(peer)
            if peer not in failures:
                short = self._complete(peer, posted.transfers[peer], posted.stage)
                if short is not None:
                    failures[peer] = short
        if failures and not tolerate:
            raise failures[min(failures)]
        return failures

    def wait_any(self, posted: Posted, count: int, peers: Sequence[int] | None = None) -> list[int]:
        """Waits, within comm.timeout_s, until `count` of `peers` (default: all still open) have
        completed their transfers, and returns those that have.

        The others stay open, each watched by a thread of its own: ready() collects them later,
        or wait_any() again. gloo offers no reliable completion test for point-to-point works.
        """
        candidates = list(posted.open if peers is None else peers)
        limit = Limit(self.timeout_s, 1)
        done = self._arrivals(posted, candidates, count, limit)
        if len(done) < count:
            silent = [peer for peer in candidates if peer not in done]
            raise PeerError(self.rank, silent[0], posted.stage, limit.silence())
        self._collect(posted, done)
        return done

    def ready(self, posted: Posted) -> list[int]:
        """Collects, without blocking, the watched peers whose transfers have completed."""
        with posted.arrival:
            done = [peer for peer in posted.open if peer in posted.finished]
        self._collect(posted, done)
        return done

    def _arrivals(self, posted: Posted, peers: list[int], count: int, limit: Limit) -> list[int]:
        """Watches `peers` and waits until `count` of them finished, or the deadline; returns the
        peers that finished (with or without an error)."""
        for peer in peers:
            self._watch(posted, peer)

        def arrived() -> list[int]:
            return [peer for peer in peers if peer in posted.finished]

        with posted.arrival:
            posted.arrival.wait_for(lambda: len(arrived()) >= count, timeout=max(limit.remaining(), 0.0))
            return arrived()

    def _watch(self, posted: Posted, peer: int) -> None:
        """A daemon thread waits for the peer's works and reports to posted.finished.

        It waits without a practical limit: a gloo wait that times out closes every pair of the
        process group ("Application timeout caused pair closure"), which would take the live peers
        down with a silent one. The deadline is the caller's; a thread still waiting at it stays
        blocked and is never joined.
        """
        if peer in posted.watched:
            return
        posted.watched.add(peer)

        def wait_for_peer() -> None:
            error = None
            try:
                for work in posted.transfers[peer].works:
                    work.wait(timeout=UNLIMITED)
            except RuntimeError as failure:
                error = failure
            with posted.arrival:
                posted.finished[peer] = error
                posted.arrival.notify_all()

        threading.Thread(target=wait_for_peer, daemon=True).start()

    def _collect(self, posted: Posted, peers: list[int]) -> None:
        limit = Limit(self.timeout_s, 1)
        for peer in peers:
            posted.close(peer)
            error = posted.finished[peer]
            if error is not None:
                raise self._failure(peer, posted.stage, error, limit)
            short = self._complete(peer, posted.transfers[peer], posted.stage)
            if short is not None:
                raise short

    def _complete(self, peer: int, transfers: PeerTransfers, stage: str) -> PeerError | None:
        """Copies staged receives back and counts the bytes; a receive whose mark survived got a
        shorter message than its buffer (which gloo accepts without a word)."""
        for tensor, staged in transfers.copies:
            tensor.copy_(staged)
        self.bytes_sent += transfers.bytes_sent
        self.bytes_recv += transfers.bytes_recv
        self.messages_sent += transfers.messages_sent
        self.messages_recv += transfers.messages_recv
        if any(bool(torch.isnan(tensor.view(-1)[-1])) for tensor in transfers.marked):
            return PeerError(self.rank, peer, stage, "the message ended early (or its last value is NaN)")
        return None

    def _wait_in_turn(self, by_peer: dict[int, list[dist.Work]], stage: str, limit: Limit) -> dict[int, PeerError]:
        for peer, works in by_peer.items():
            for work in works:
                try:
                    work.wait(timeout=timedelta(seconds=max(limit.remaining(), 0.001)))
                except RuntimeError as error:
                    raise self._failure(peer, stage, error, limit) from error
        return {}

    def _wait_apart(self, posted: Posted, peers: list[int], limit: Limit) -> dict[int, PeerError]:
        """One watching thread per peer (_watch), the deadline kept here: a silent peer fails alone."""
        finished = self._arrivals(posted, peers, len(peers), limit)
        failures = {}
        for peer in peers:
            if peer not in finished:  # its thread is still waiting
                failures[peer] = PeerError(self.rank, peer, posted.stage, limit.silence())
            elif (error := posted.finished[peer]) is not None:
                failures[peer] = self._failure(peer, posted.stage, error, limit)
        return failures

    def _failure(self, peer: int, stage: str, error: RuntimeError, limit: Limit) -> PeerError:
        text = str(error)
        if "timed out" in text.lower():
            return PeerError(self.rank, peer, stage, limit.silence())
        return PeerError(
            self.rank, peer, stage, f"connection lost, the peer process probably died (see its log): {text}"
        )

    def header(self, message: Message) -> torch.Tensor:
        """A message as a bare header on the wire device, ready to send."""
        return message.encode(torch.empty(HEADER_LEN, dtype=torch.int64, device=self.wire))

    def empty_header(self) -> torch.Tensor:
        return torch.zeros(HEADER_LEN, dtype=torch.int64, device=self.wire)

    def _on_wire(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if tensor.device == self.wire else torch.empty_like(tensor, device=self.wire)

    def expect(
        self,
        buffer: torch.Tensor,
        peer: int,
        stage: str,
        *types: type[M],
        iteration: int | None = None,
        numel: int | None = None,
    ) -> M:
        """Reads a received header as one of `types`, and fails with the PeerError that names the
        peer and the stage if the peer is not where the protocol is: another kind, another
        iteration, or a payload of another size than the `numel` values the receiver holds."""
        try:
            message, slots = decode(buffer, types)
        except ProtocolMismatch as error:
            raise PeerError(self.rank, peer, stage, str(error)) from error
        if iteration is not None and slots.iteration != iteration:
            raise PeerError(self.rank, peer, stage, f"out of step: message of iteration {slots.iteration}")
        if numel is not None and slots.numel != numel:
            raise PeerError(self.rank, peer, stage, f"announced {slots.numel} payload values, expected {numel}")
        return message


def _mark(buffer: torch.Tensor) -> None:
    """Marks a receive buffer so that a message shorter than it shows: gloo accepts one silently.
    A bare header's last slot (0 in every header sent) becomes protocol.UNWRITTEN, which decode()
    refuses; a float buffer's last value becomes NaN, checked on completion. Byte packets mark
    themselves (algorithms/mdgan/message.py: Packet.arm)."""
    if buffer.dtype == torch.int64 and buffer.numel() == HEADER_LEN:
        buffer[-1] = UNWRITTEN
    elif buffer.is_floating_point() and buffer.numel():
        buffer.view(-1)[-1] = float("nan")


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
