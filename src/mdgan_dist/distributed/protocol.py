"""The wire protocol: one small type per message kind, all carried by the same header tensor.

Every message starts with one int64 header of HEADER_LEN values, laid out as
[kind, iteration, arg0, arg1, numel, value0, value1, 0] (Slots); value0 and value1 carry float64
values (an FL-GAN worker's losses) bit-cast into int64, so one header tensor suffices. Each kind
has exactly one message type, which gives those slots their names: it is built from and written
into the same tensor, so the bytes on the wire are the layout's whatever type carries them. No
slot has a value with a special meaning: what differs is a kind of its own. `numel` is the number
of payload values that follow the header (in the same packet, or as the next message), 0 for a
bare header. MD-GAN's per-worker figures travel in its feedback packet (mdgan/message.py:
WORKER_STATISTICS), not in the header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, TypeVar, cast

import torch

HEADER_LEN = 8
# A receive buffer's header ends with this until a message overwrites it: every header sent ends
# with 0, and gloo accepts a message shorter than the buffer without a word, leaving the mark.
UNWRITTEN = -1
MICROSECONDS = 1e6  # the workers' compute times travel as integer microseconds


class Kind(IntEnum):
    """One per message type (the type named beside it)."""

    SERVER_HELLO = 1  # ServerHello
    TRAIN = 2  # Train
    FEEDBACK = 3  # Feedback (MD-GAN)
    SWAP = 4  # SwapOrder
    DISCRIMINATOR = 5  # DiscriminatorState
    STOP = 6  # Stop
    ABORT = 7  # Abort
    CHECKPOINT = 8  # Checkpoint
    SYNC = 9  # SyncOrder (FL-GAN)
    CLASSES = 10  # ClassSets (MD-GAN, when mdgan.aggregate needs them)
    WORKER_HELLO = 11  # WorkerHello
    GO = 12  # Go
    PAIR_GREETING = 13  # PairGreeting (MD-GAN)
    REFUSAL = 14  # Refusal
    LOCAL_MODELS = 15  # LocalModels (FL-GAN)
    AVERAGED_MODELS = 16  # AveragedModels (FL-GAN)
    LOCAL_LOSSES = 17  # LocalLosses (FL-GAN)
    CLUSTER_SUMS = 18  # ClusterSums (data.clusters)
    CENTROIDS = 19  # Centroids (data.clusters)


@dataclass(frozen=True)
class Slots:
    """The header's fields as they travel, before a message type names them."""

    kind: int
    iteration: int = 0
    arg0: int = 0
    arg1: int = 0
    numel: int = 0
    value0: float = 0.0
    value1: float = 0.0

    def write(self, out: torch.Tensor) -> torch.Tensor:
        """Writes the header into a preallocated int64 tensor of HEADER_LEN and returns it."""
        ints = torch.tensor([self.kind, self.iteration, self.arg0, self.arg1, self.numel])
        values = torch.tensor([self.value0, self.value1, 0.0], dtype=torch.float64)
        out[:5].copy_(ints)
        out[5:].copy_(values.view(torch.int64))
        return out

    @classmethod
    def read(cls, tensor: torch.Tensor) -> Slots:
        ints = tensor.cpu()
        values = ints[5:7].clone().view(torch.float64)
        kind, iteration, arg0, arg1, numel = (int(value) for value in ints[:5])
        return cls(kind, iteration, arg0, arg1, numel, float(values[0]), float(values[1]))


class Message:
    """A message type: its kind, and how its named fields map onto the header's slots."""

    KIND: ClassVar[Kind]

    def slots(self) -> Slots:
        raise NotImplementedError

    @classmethod
    def from_slots(cls, slots: Slots) -> Message:
        raise NotImplementedError

    def encode(self, out: torch.Tensor) -> torch.Tensor:
        return self.slots().write(out)


M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class ServerHello(Message):
    """server -> worker, first of the handshake; the message shapes [b, C, H, W] follow."""

    KIND = Kind.SERVER_HELLO
    config_digest: int
    start: int  # the iteration to start from
    shapes_numel: int

    def slots(self) -> Slots:
        return Slots(self.KIND, arg0=self.config_digest, arg1=self.start, numel=self.shapes_numel)

    @classmethod
    def from_slots(cls, slots: Slots) -> ServerHello:
        return cls(slots.arg0, slots.arg1, slots.numel)


@dataclass(frozen=True)
class WorkerHello(Message):
    """worker -> server: it runs the server's config; its shard size."""

    KIND = Kind.WORKER_HELLO
    shard_size: int

    def slots(self) -> Slots:
        return Slots(self.KIND, arg0=self.shard_size)

    @classmethod
    def from_slots(cls, slots: Slots) -> WorkerHello:
        return cls(slots.arg0)


@dataclass(frozen=True)
class Go(Message):
    """server -> worker, the handshake's verdict when every worker agreed: start."""

    KIND = Kind.GO

    def slots(self) -> Slots:
        return Slots(self.KIND)

    @classmethod
    def from_slots(cls, slots: Slots) -> Go:  # noqa: ARG003 -- Message's signature; a Go has no fields
        return cls()


@dataclass(frozen=True)
class PairGreeting(Message):
    """worker -> worker, once at start: the sender's rank (MD-GAN's swap pairs connect)."""

    KIND = Kind.PAIR_GREETING
    rank: int

    def slots(self) -> Slots:
        return Slots(self.KIND, arg0=self.rank)

    @classmethod
    def from_slots(cls, slots: Slots) -> PairGreeting:
        return cls(slots.arg0)


@dataclass(frozen=True)
class Refusal(Message):
    """server -> worker, in place of its ServerHello: the server cannot start (its log says why)."""

    KIND = Kind.REFUSAL

    def slots(self) -> Slots:
        return Slots(self.KIND)

    @classmethod
    def from_slots(cls, slots: Slots) -> Refusal:  # noqa: ARG003 -- Message's signature; a Refusal has no fields
        return cls()


@dataclass(frozen=True)
class Abort(Message):
    """Either way, in the handshake: the worker rank that runs another configuration."""

    KIND = Kind.ABORT
    rank: int

    def slots(self) -> Slots:
        return Slots(self.KIND, arg0=self.rank)

    @classmethod
    def from_slots(cls, slots: Slots) -> Abort:
        return cls(slots.arg0)


@dataclass(frozen=True)
class Train(Message):
    """server -> worker: the generated batches of one iteration follow (MD-GAN), or the order to
    run one local iteration (FL-GAN, numel 0)."""

    KIND = Kind.TRAIN
    iteration: int
    control_follows: bool = False  # the next message is a control message, sent as a bare header
    numel: int = 0

    def slots(self) -> Slots:
        return Slots(self.KIND, self.iteration, arg0=int(self.control_follows), numel=self.numel)

    @classmethod
    def from_slots(cls, slots: Slots) -> Train:
        return cls(slots.iteration, bool(slots.arg0), slots.numel)


@dataclass(frozen=True)
class Feedback(Message):
    """MD-GAN, worker process -> server: the seconds it spent on the D steps and on the feedback
    once the batches came, and on the real half computed ahead before (mdgan.real_ahead); its
    packet (numel payload values) holds each worker's statistics and error feedback F_n."""

    KIND = Kind.FEEDBACK
    iteration: int
    d_seconds: float
    feedback_seconds: float
    numel: int
    ahead_seconds: float = 0.0

    def slots(self) -> Slots:
        return Slots(
            self.KIND,
            self.iteration,
            arg0=round(self.d_seconds * MICROSECONDS),
            arg1=round(self.feedback_seconds * MICROSECONDS),
            numel=self.numel,
            value0=self.ahead_seconds,
        )

    @classmethod
    def from_slots(cls, slots: Slots) -> Feedback:
        return cls(slots.iteration, slots.arg0 / MICROSECONDS, slots.arg1 / MICROSECONDS, slots.numel, slots.value0)


@dataclass(frozen=True)
class LocalLosses(Message):
    """FL-GAN, worker -> server: one local iteration done, with its D and G loss."""

    KIND = Kind.LOCAL_LOSSES
    iteration: int
    d_loss: float
    g_loss: float

    def slots(self) -> Slots:
        return Slots(self.KIND, self.iteration, value0=self.d_loss, value1=self.g_loss)

    @classmethod
    def from_slots(cls, slots: Slots) -> LocalLosses:
        return cls(slots.iteration, slots.value0, slots.value1)


@dataclass(frozen=True)
class SwapOrder(Message):
    """server -> worker process, after an iteration, one per worker it hosts (in slot order): where
    to send that worker's D, and where its next one comes from. Workers are named by address:
    rank x W + slot with W = mdgan.workers_per_rank, so with one worker per process, its rank."""

    KIND = Kind.SWAP
    iteration: int
    send_to: int
    receive_from: int

    def slots(self) -> Slots:
        return Slots(self.KIND, self.iteration, arg0=self.send_to, arg1=self.receive_from)

    @classmethod
    def from_slots(cls, slots: Slots) -> SwapOrder:
        return cls(slots.iteration, slots.arg0, slots.arg1)


@dataclass(frozen=True)
class DiscriminatorState(Message):
    """worker -> worker: a D's flat state follows; born_on: the worker that D was created on."""

    KIND = Kind.DISCRIMINATOR
    iteration: int
    born_on: int
    numel: int

    def slots(self) -> Slots:
        return Slots(self.KIND, self.iteration, arg0=self.born_on, numel=self.numel)

    @classmethod
    def from_slots(cls, slots: Slots) -> DiscriminatorState:
        return cls(slots.iteration, slots.arg0, slots.numel)


@dataclass(frozen=True)
class Stop(Message):
    """server -> worker: training is over; finished is false after a stop request (the run
    continues later, and nobody writes final models)."""

    KIND = Kind.STOP
    iteration: int
    finished: bool

    def slots(self) -> Slots:
        return Slots(self.KIND, self.iteration, arg0=int(self.finished))

    @classmethod
    def from_slots(cls, slots: Slots) -> Stop:
        return cls(slots.iteration, bool(slots.arg0))


@dataclass(frozen=True)
class Checkpoint(Message):
    """server -> worker: write your state for this iteration; worker -> server: written, or failed
    (it could not write its file: a full disk; its log says why)."""

    KIND = Kind.CHECKPOINT
    iteration: int
    failed: bool = False

    def slots(self) -> Slots:
        return Slots(self.KIND, self.iteration, arg0=int(self.failed))

    @classmethod
    def from_slots(cls, slots: Slots) -> Checkpoint:
        return cls(slots.iteration, bool(slots.arg0))


@dataclass(frozen=True)
class SyncOrder(Message):
    """FL-GAN, server -> worker: send your G and D for the averaging after this iteration."""

    KIND = Kind.SYNC
    iteration: int

    def slots(self) -> Slots:
        return Slots(self.KIND, self.iteration)

    @classmethod
    def from_slots(cls, slots: Slots) -> SyncOrder:
        return cls(slots.iteration)


@dataclass(frozen=True)
class _Payload(Message):
    """numel values follow, of `iteration`: FL-GAN's flat G and D state for the averaging after it,
    or a round of data.clusters' k-means."""

    iteration: int
    numel: int

    def slots(self) -> Slots:
        return Slots(self.KIND, self.iteration, numel=self.numel)

    @classmethod
    def from_slots(cls: type[PayloadMessage], slots: Slots) -> PayloadMessage:
        return cls(slots.iteration, slots.numel)


PayloadMessage = TypeVar("PayloadMessage", bound=_Payload)


@dataclass(frozen=True)
class LocalModels(_Payload):
    """FL-GAN, worker -> server: its own G and D follow."""

    KIND = Kind.LOCAL_MODELS


@dataclass(frozen=True)
class AveragedModels(_Payload):
    """FL-GAN, server -> worker: the weighted average of every worker's G and D follows."""

    KIND = Kind.AVERAGED_MODELS


@dataclass(frozen=True)
class ClassSets(Message):
    """MD-GAN, worker -> server, right after the handshake when mdgan.aggregate needs it: which
    classes each of the process's workers holds follows (float32 [W, classes], 1 or 0)."""

    KIND = Kind.CLASSES
    numel: int

    def slots(self) -> Slots:
        return Slots(self.KIND, numel=self.numel)

    @classmethod
    def from_slots(cls, slots: Slots) -> ClassSets:
        return cls(slots.numel)


@dataclass(frozen=True)
class ClusterSums(_Payload):
    """data.clusters, worker -> server, in round `iteration` of the k-means before training
    (algorithms/clusters.py): for each worker the process hosts, each cluster's image sum and count."""

    KIND = Kind.CLUSTER_SUMS


@dataclass(frozen=True)
class Centroids(_Payload):
    """data.clusters, server -> worker: the centroids and counts from every worker's sums of the round."""

    KIND = Kind.CENTROIDS


class ProtocolMismatch(ValueError):
    """A header that none of the expected message types reads; says what arrived instead."""


def decode(tensor: torch.Tensor, types: Sequence[type[M]]) -> tuple[M, Slots]:
    """Reads a received header as the one of `types` its kind names; raises ProtocolMismatch."""
    if int(tensor[HEADER_LEN - 1]) != 0:
        raise ProtocolMismatch(f"malformed header {tensor.tolist()}: a shorter message than a header, or not a header")
    slots = Slots.read(tensor)
    by_kind = {message_type.KIND: message_type for message_type in types}
    assert len(by_kind) == len(types), "the expected message types must differ in kind"
    try:
        kind = Kind(slots.kind)
    except ValueError:
        raise ProtocolMismatch(f"malformed header {tensor.tolist()}") from None
    if kind not in by_kind:
        expected = " or ".join(message_type.__name__ for message_type in types)
        raise ProtocolMismatch(f"expected a {expected} message, got a {kind.name} header")
    return cast(M, by_kind[kind].from_slots(slots)), slots
