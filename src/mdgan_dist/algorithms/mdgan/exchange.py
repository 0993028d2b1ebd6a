"""One MD-GAN iteration as explicit schedules: the typed actions each side performs, in order.

`server_actions` lists what the server does in one iteration and `worker_actions` what a worker
process does with a TRAIN; the server's step (server.py) and the worker's loop (worker.py) carry
out these lists, and nothing else decides what goes on the wire. The framing follows from the
worker's schedule: its last action says how it receives the next message. RECEIVE_BATCHES posts
a receive of a whole TRAIN packet (header and batches in one message); RECEIVE_ORDER posts one of
a bare header of any kind (after the handshake, and after a TRAIN that announced a control
message), so the server sends a TRAIN to such a worker as a bare header and then its packet
(`framed`).

The options are variations of the server's list:
- mdgan.overlap: the next iteration's batches, drawn by G before this iteration's step
  (GENERATE stale), are sent before this iteration's feedback is awaited, unless a control
  message follows this iteration;
- mdgan.quorum: AWAIT_QUORUM takes the first mdgan.quorum answers and leaves the others late;
  COLLECT_LATE receives and drops the late ones before the next batches go out (all of them
  when a control message follows that iteration, so that every worker is told), and again after
  G's step when a control message comes next;
- mdgan.outlier_iterations: WATCH_OUTLIERS between the check of the feedback and G's step
  (outliers.py); a worker it drops is sent a STOP in the framing it expects, and leaves;
- fault.tolerate_worker_loss does not change the lists but whom they address: every action
  addresses the live workers, and a worker that fails in one (silent, dead, a short or
  non-finite answer) is dropped from the roster there, so the following actions skip it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import torch

from mdgan_dist.algorithms.mdgan.message import Packet
from mdgan_dist.distributed.protocol import M, Stop, Train
from mdgan_dist.distributed.transport import Transfer, Transport


class Act(Enum):
    # The server's actions.
    GENERATE = "generate"  # G draws the k batches of an iteration and copies them into the packets
    COLLECT_LATE = "collect late feedback"  # mdgan.quorum: receive and drop the answers that missed their quorum
    SEND_BATCHES = "send batches"  # a TRAIN to every worker not late; the receive of its FEEDBACK posted
    AWAIT_FEEDBACK = "await feedback"  # every worker's answer
    AWAIT_QUORUM = "await quorum"  # mdgan.quorum: the first answers; the others become late
    CHECK_FEEDBACK = "check feedback"  # each answer whole, of the iteration, finite
    WATCH_OUTLIERS = "watch outliers"  # mdgan.outlier_iterations: name (and drop) a worker that keeps lying far off
    STEP_GENERATOR = "step G"  # aggregate the used feedback (mdgan.aggregate), backward through G, Adam
    ORDER_SWAP = "order swap"  # every worker told where its D goes and where the next one comes from
    # A worker process's actions.
    TRAIN_DISCRIMINATORS = "train discriminators"  # its D steps and the feedback on the received batches
    SEND_FEEDBACK = "send feedback"  # the FEEDBACK packet: statistics, feedback, verdicts
    RECEIVE_BATCHES = "receive batches"  # the next TRAIN, header and batches in one packet
    RECEIVE_ORDER = "receive order"  # a bare header: a TRAIN (its packet follows), a swap or checkpoint order, a stop


@dataclass(frozen=True)
class Action:
    act: Act
    iteration: int  # 0-based: the iteration whose batches, feedback or step this is, or the next one
    stale: bool = False  # GENERATE: through the snapshot of G before the current step (mdgan.overlap)
    everyone: bool = False  # COLLECT_LATE: wait for every late answer, not only until a quorum is free

    def __str__(self) -> str:
        variant = " (stale)" if self.stale else " (everyone)" if self.everyone else ""
        return f"{self.act.value} {self.iteration}{variant}"


def server_actions(
    iteration: int,
    *,
    sent_ahead: bool,
    control: bool,
    next_control: bool,
    overlap: bool,
    quorum: bool,
    swap: bool,
    watch: bool = False,
) -> list[Action]:
    """The server's actions in one iteration.

    sent_ahead: this iteration's batches went out during the last one (overlap); control and
    next_control: a control message (swap, checkpoint or stop order) follows this iteration, the
    next one; quorum: mdgan.quorum is set; swap: a swap is due after it; watch:
    mdgan.outlier_iterations is set."""
    actions = [] if sent_ahead else hand_out(iteration, stale=False, control=control, quorum=quorum)
    if overlap and not control:
        actions += hand_out(iteration + 1, stale=True, control=next_control, quorum=quorum)
    actions += [
        Action(Act.AWAIT_QUORUM if quorum else Act.AWAIT_FEEDBACK, iteration),
        Action(Act.CHECK_FEEDBACK, iteration),
        *([Action(Act.WATCH_OUTLIERS, iteration)] if watch else []),
        Action(Act.STEP_GENERATOR, iteration),
    ]
    if quorum and control:  # every late answer is in before the control message goes out
        actions.append(Action(Act.COLLECT_LATE, iteration, everyone=True))
    if swap:
        actions.append(Action(Act.ORDER_SWAP, iteration))
    return actions


def hand_out(iteration: int, *, stale: bool, control: bool, quorum: bool) -> list[Action]:
    """Generating an iteration's batches and sending them (after the late answers, with a quorum)."""
    late = [Action(Act.COLLECT_LATE, iteration, everyone=control)] if quorum else []
    return [Action(Act.GENERATE, iteration, stale=stale), *late, Action(Act.SEND_BATCHES, iteration)]


def worker_actions(order: Train) -> list[Action]:
    """What a worker process does with a TRAIN, ending with how it receives the next message."""
    receive = Act.RECEIVE_ORDER if order.control_follows else Act.RECEIVE_BATCHES
    return [
        Action(Act.TRAIN_DISCRIMINATORS, order.iteration),
        Action(Act.SEND_FEEDBACK, order.iteration),
        Action(receive, order.iteration + 1),
    ]


def after_control(iteration: int) -> Action:
    """How a worker receives after the handshake or a control message: a bare header."""
    return Action(Act.RECEIVE_ORDER, iteration)


def framed(peer: int, order: Train | Stop, packet: Packet, expecting: Act, transport: Transport) -> list[Transfer]:
    """Server side: the messages that carry `order` (a TRAIN and the batches in `packet`, or a
    STOP that dismisses the worker) to a worker whose pending receive is `expecting`: the packet
    alone, its header holding the order, to a worker that waits for one; else a bare header first
    (a STOP needs no more)."""
    order.encode(packet.header)
    if expecting == Act.RECEIVE_BATCHES:
        return [(peer, packet.buffer)]
    header = [(peer, transport.header(order))]
    return header if isinstance(order, Stop) else [*header, (peer, packet.buffer)]


def receive(
    transport: Transport,
    receiving: Action,
    packet: Packet,
    instruction: torch.Tensor,
    types: Sequence[type[M]],
    patience: int,
    meanwhile: Callable[[], None] | None = None,
) -> M:
    """Worker side: the server's next message, one of `types`, as `receiving` (RECEIVE_BATCHES or
    RECEIVE_ORDER) expects it; a TRAIN's batches are then in `packet`, checked to be of the
    iteration and the size the TRAIN announced. `meanwhile` runs while the message travels."""
    stage = "waiting for the server's next instruction"
    whole = receiving.act == Act.RECEIVE_BATCHES
    buffer, header = (packet.buffer, packet.header) if whole else (instruction, instruction)
    packet.arm()
    posted = transport.post(stage, recvs=[(0, buffer)])
    if meanwhile is not None:
        meanwhile()
    transport.wait(posted, patience=patience)
    message = transport.expect(header, 0, stage, *types)
    if isinstance(message, Train):
        stage = f"receiving the generated batches of iteration {message.iteration}"
        if not whole:
            transport.exchange(stage, recvs=[(0, packet.buffer)])
        transport.expect(packet.header, 0, stage, Train, iteration=message.iteration, numel=packet.payload.numel())
        packet.require_whole(transport, 0, stage)
    return message
