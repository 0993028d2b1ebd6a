"""The typed messages: each writes the one header layout, reads back what it wrote, and a header
that does not fit what the receiver expects fails with the error that names the peer and the stage."""

from __future__ import annotations

import pytest
import torch

from mdgan_dist.distributed.protocol import (
    HEADER_LEN,
    Abort,
    AveragedModels,
    Centroids,
    Checkpoint,
    ClassSets,
    ClusterSums,
    DiscriminatorState,
    Feedback,
    Go,
    Kind,
    LocalLosses,
    LocalModels,
    Message,
    PairGreeting,
    Refusal,
    ServerHello,
    Stop,
    SwapOrder,
    SyncOrder,
    Train,
    WorkerHello,
)
from mdgan_dist.distributed.transport import Transport
from mdgan_dist.errors import PeerError

MESSAGES: list[Message] = [
    ServerHello(config_digest=2**62 + 5, start=40, shapes_numel=4),
    WorkerHello(shard_size=1250),
    Go(),
    Refusal(),
    PairGreeting(rank=3),
    Abort(rank=2),
    Train(iteration=7, control_follows=True, numel=100_352),
    Feedback(7, d_seconds=0.012345, feedback_seconds=0.000678, numel=50_176),
    LocalLosses(7, d_loss=0.6931, g_loss=-1.25),
    SwapOrder(iteration=9, send_to=2, receive_from=4),
    DiscriminatorState(iteration=9, born_on=1, numel=1_000),
    Stop(iteration=10, finished=False),
    Checkpoint(iteration=10),
    SyncOrder(iteration=12),
    LocalModels(iteration=12, numel=3_000),
    AveragedModels(iteration=12, numel=3_000),
    ClassSets(numel=40),
    ClusterSums(iteration=3, numel=2 * 30 * 785),
    Centroids(iteration=3, numel=30 * 785),
]


def test_each_kind_has_exactly_one_message_type() -> None:
    """A receiver never has to guess which type a header is: every kind is read as one type."""
    assert sorted(type(message).KIND for message in MESSAGES) == sorted(Kind)


def wire(values: list[int | float]) -> torch.Tensor:
    """The header layout written by hand: five int64, then two float64 bit-cast, then 0."""
    ints = torch.tensor([int(value) for value in values[:5]])
    floats = torch.tensor([float(values[5]), float(values[6]), 0.0], dtype=torch.float64).view(torch.int64)
    return torch.cat([ints, floats])


@pytest.mark.parametrize("message", MESSAGES, ids=lambda message: type(message).__name__)
def test_a_message_reads_back_what_it_wrote(message: Message) -> None:
    header = message.encode(torch.zeros(HEADER_LEN, dtype=torch.int64))
    assert int(header[0]) == message.KIND
    transport = Transport(0, 1.0, torch.device("cpu"))
    assert transport.expect(header, 1, "a test", type(message)) == message


def test_the_named_fields_sit_where_the_layout_puts_them() -> None:
    feedback = Feedback(7, d_seconds=0.012345, feedback_seconds=0.000678, numel=96)
    expected = wire([Kind.FEEDBACK, 7, 12345, 678, 96, 0, 0])
    assert torch.equal(feedback.encode(torch.zeros(HEADER_LEN, dtype=torch.int64)), expected)
    order = SwapOrder(iteration=9, send_to=2, receive_from=4)
    assert torch.equal(order.encode(torch.zeros(HEADER_LEN, dtype=torch.int64)), wire([Kind.SWAP, 9, 2, 4, 0, 0, 0]))
    hello = ServerHello(config_digest=123, start=40, shapes_numel=4)
    assert torch.equal(
        hello.encode(torch.zeros(HEADER_LEN, dtype=torch.int64)), wire([Kind.SERVER_HELLO, 0, 123, 40, 4, 0, 0])
    )
    losses = LocalLosses(3, d_loss=0.5, g_loss=-1.25)
    assert torch.equal(
        losses.encode(torch.zeros(HEADER_LEN, dtype=torch.int64)), wire([Kind.LOCAL_LOSSES, 3, 0, 0, 0, 0.5, -1.25])
    )


def test_a_message_of_another_kind_is_refused_even_when_its_layout_fits() -> None:
    """A pair greeting has a WorkerHello's layout (one int): its kind alone tells them apart."""
    header = PairGreeting(rank=3).encode(torch.zeros(HEADER_LEN, dtype=torch.int64))
    transport = Transport(0, 1.0, torch.device("cpu"))
    with pytest.raises(PeerError, match="expected a WorkerHello or Abort message, got a PAIR_GREETING header"):
        transport.expect(header, 3, "a test", WorkerHello, Abort)


@pytest.mark.parametrize(
    ("received", "expectation", "cause"),
    [
        (Feedback(5, 0.1, 0.2, numel=96), {"types": (Train, Stop)}, "expected a Train or Stop message, got a FEEDBACK"),
        (
            Feedback(4, 0.1, 0.2, numel=96),
            {"types": (Feedback,), "iteration": 5},
            "out of step: message of iteration 4",
        ),
        (
            Feedback(5, 0.1, 0.2, numel=95),
            {"types": (Feedback,), "numel": 96},
            "announced 95 payload values, expected 96",
        ),
        (
            LocalModels(3, numel=10),
            {"types": (LocalModels,), "numel": 12},
            "announced 10 payload values, expected 12",
        ),
        (None, {"types": (Checkpoint,)}, "malformed header"),
    ],
    ids=["kind", "iteration", "size", "model-size", "malformed"],
)
def test_a_mismatch_names_the_peer_and_the_stage(
    received: Message | None, expectation: dict[str, object], cause: str
) -> None:
    header = torch.full((HEADER_LEN,), 99, dtype=torch.int64)
    if received is not None:
        received.encode(header)
    transport = Transport(2, 1.0, torch.device("cpu"))
    types = expectation.pop("types")
    with pytest.raises(PeerError) as raised:
        transport.expect(header, 0, "feedback of iteration 5", *types, **expectation)  # type: ignore[arg-type]
    assert (raised.value.rank, raised.value.peer, raised.value.stage) == (2, 0, "feedback of iteration 5")
    assert str(raised.value).startswith("rank 2: peer rank 0 failed during feedback of iteration 5: ")
    assert cause in str(raised.value)
