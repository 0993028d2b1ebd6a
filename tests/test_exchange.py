"""The explicit schedule of an MD-GAN iteration (algorithms/mdgan/exchange.py): the server's
actions as documented, and the framing that follows from them agreeing with the worker's, message
by message, over whole runs with swaps, checkpoints, stops and overlap."""

from collections import deque

import pytest
import torch

from mdgan_dist.algorithms.mdgan.exchange import (
    Act,
    after_control,
    framed,
    server_actions,
    worker_actions,
)
from mdgan_dist.algorithms.mdgan.message import BatchMessage
from mdgan_dist.algorithms.mdgan.schedule import control_follows
from mdgan_dist.distributed.protocol import Checkpoint, Stop, SwapOrder, Train, decode
from mdgan_dist.distributed.transport import Transport

CPU = torch.device("cpu")


def listed(iteration: int, **options: bool) -> list[str]:
    settings = {"sent_ahead": False, "control": False, "next_control": False, "overlap": False, "quorum": False}
    return [str(action) for action in server_actions(iteration, **{**settings, "swap": False, **options})]


def test_the_server_actions_read_as_documented() -> None:
    plain = ["generate 4", "send batches 4", "await feedback 4", "check feedback 4", "step G 4"]
    assert listed(4) == plain
    assert listed(4, control=True, swap=True) == [*plain, "order swap 4"]
    # mdgan.overlap: the next batches (G before this step: stale) go out before this feedback is
    # awaited; this iteration's went out during the last one.
    assert listed(4, sent_ahead=True, overlap=True) == [
        "generate 5 (stale)",
        "send batches 5",
        "await feedback 4",
        "check feedback 4",
        "step G 4",
    ]
    # ... but never across a control message.
    assert listed(4, sent_ahead=True, overlap=True, control=True, swap=True) == [
        "await feedback 4",
        "check feedback 4",
        "step G 4",
        "order swap 4",
    ]
    # mdgan.quorum: the late answers are collected before each sending, and all of them before a
    # control message (the one before the sending of 5, whose batches a control message follows).
    assert listed(4, quorum=True, overlap=True, next_control=True) == [
        "generate 4",
        "collect late feedback 4",
        "send batches 4",
        "generate 5 (stale)",
        "collect late feedback 5 (everyone)",
        "send batches 5",
        "await quorum 4",
        "check feedback 4",
        "step G 4",
    ]
    assert listed(4, quorum=True, control=True)[-1] == "collect late feedback 4 (everyone)"
    # mdgan.outlier_iterations: the watch sees the checked feedback before G's step uses it.
    assert listed(4, watch=True)[-3:] == ["check feedback 4", "watch outliers 4", "step G 4"]


def test_a_worker_receives_a_packet_alone_only_when_no_control_message_follows() -> None:
    assert [str(action) for action in worker_actions(Train(7, control_follows=False))] == [
        "train discriminators 7",
        "send feedback 7",
        "receive batches 8",
    ]
    assert worker_actions(Train(7, control_follows=True))[-1].act == Act.RECEIVE_ORDER
    assert after_control(3).act == Act.RECEIVE_ORDER


class Mismatch(AssertionError):
    """The worker's pending receive does not fit the server's next message: a hang or a refusal."""


def replay(
    iterations: int, period: int | None, every: int, overlap: bool, stop: int | None, ahead_always: bool = False
) -> list[str]:
    """A run's messages from the server to one worker, as server_actions and the loop's checkpoint
    and stop orders send them, read by the worker as its schedule expects them; returns the
    iterations the worker trained and the control messages it got, in order.

    ahead_always: a server that sends ahead across control messages (the bug the schedule rules out)."""
    transport = Transport(0, 1.0, CPU)
    packet = BatchMessage(1, 2, (1, 2, 2), None, torch.float32, CPU)
    wire: deque[torch.Tensor] = deque()
    expecting, receiving = Act.RECEIVE_ORDER, after_control(0)
    sent: set[int] = set()
    log: list[str] = []

    def stops_after(t: int) -> bool:
        return stop is not None and stop <= t < iterations - 1

    def control(t: int) -> bool:
        return stops_after(t) or control_follows(t + 1, iterations, period, every)

    def worker_reads(until: type | int) -> None:
        """The worker takes messages until it answered iteration `until`, or got a message of that type."""
        nonlocal receiving
        while wire:
            message = wire.popleft()
            whole = receiving.act == Act.RECEIVE_BATCHES
            if (message.numel() == packet.buffer.numel()) != whole:
                raise Mismatch(f"worker in '{receiving}' got {message.numel()} bytes")
            if whole:
                packet.buffer.copy_(message)
            order, _ = decode(packet.header if whole else message, (Train, SwapOrder, Checkpoint, Stop))
            if isinstance(order, Train):
                if not whole and wire.popleft().numel() != packet.buffer.numel():
                    raise Mismatch("a TRAIN header without its packet")
                *_, receiving = worker_actions(order)
                log.append(f"train {order.iteration}")
                if order.iteration == until:
                    return
            else:
                log.append(type(order).__name__)
                receiving = after_control(order.iteration)
                if isinstance(order, until):  # type: ignore[arg-type]
                    return

    for t in range(iterations):
        for action in server_actions(
            t,
            sent_ahead=t in sent,
            control=control(t) and not ahead_always,
            next_control=overlap and not control(t) and control(t + 1),
            overlap=overlap,
            quorum=False,
            swap=bool(period and (t + 1) % period == 0),
        ):
            if action.act == Act.SEND_BATCHES:
                train = Train(action.iteration, control(action.iteration), packet.payload.numel())
                for _, tensor in framed(1, train, packet, expecting, transport):
                    wire.append(tensor.clone())
                expecting = worker_actions(train)[-1].act
                sent.add(action.iteration)
            elif action.act == Act.AWAIT_FEEDBACK:
                worker_reads(until=t)
            elif action.act == Act.ORDER_SWAP:
                wire.append(transport.header(SwapOrder(t, send_to=2, receive_from=2)))
                worker_reads(until=SwapOrder)
        if (every and (t + 1) % every == 0) or t + 1 == iterations or stops_after(t):
            wire.append(transport.header(Checkpoint(t + 1)))
            worker_reads(until=Checkpoint)
        if stops_after(t):
            break
    wire.append(transport.header(Stop(t + 1, finished=t + 1 == iterations)))
    worker_reads(until=Stop)
    assert not wire, "messages left unread"
    return log


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("period", [None, 1, 3, 4])
@pytest.mark.parametrize("every", [0, 5])
@pytest.mark.parametrize("stop", [None, 6])
def test_the_framing_agrees_on_both_sides_over_whole_runs(
    overlap: bool, period: int | None, every: int, stop: int | None
) -> None:
    log = replay(12, period, every, overlap, stop)
    trained = [int(entry.split()[1]) for entry in log if entry.startswith("train")]
    last = 12 if stop is None else stop + 1
    assert trained == list(range(last))
    assert log.count("SwapOrder") == (last // period if period else 0)
    assert log[-2:] == ["Checkpoint", "Stop"]


def test_a_server_that_sends_ahead_across_a_control_message_is_caught() -> None:
    with pytest.raises(Mismatch):
        replay(12, 4, 0, overlap=True, stop=None, ahead_always=True)
