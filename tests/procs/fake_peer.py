"""A peer that speaks the protocol and then breaks it, for tests/test_bad_peers.py.

    python fake_peer.py ROLE MODE OVERRIDES...

ROLE is the rank it plays (server: rank 0, worker: rank 1); every other rank runs the real trainer.
The fake one makes the start-up handshake with the project's own code, then sends one message that
does not match the protocol (MODE), and waits for the real peer to end the run.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
from pathlib import Path

import torch

from mdgan_dist.algorithms.components import label_classes
from mdgan_dist.algorithms.handshake import answer_server, greet_workers
from mdgan_dist.algorithms.mdgan.exchange import after_control, receive
from mdgan_dist.algorithms.mdgan.message import BatchMessage, FeedbackMessage
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.compose import compose
from mdgan_dist.distributed.env import LaunchEnv
from mdgan_dist.distributed.process_group import init_process_group
from mdgan_dist.distributed.protocol import Checkpoint, Feedback, Train
from mdgan_dist.distributed.transport import Transport
from mdgan_dist.errors import PeerError
from mdgan_dist.train import start_up_checks

CPU = torch.device("cpu")


def context(overrides: list[str]) -> RoleContext:
    env = LaunchEnv.from_environ()
    cfg = compose(overrides)
    _, faults, data, _, _ = start_up_checks(cfg, env, 0)
    init_process_group("gloo", env, CPU, cfg.comm.timeout_s)
    return RoleContext(cfg, faults, data, Path(cfg.run.dir or "."), CPU, Transport(env.rank, cfg.comm.timeout_s, CPU))


def garbage(header: torch.Tensor) -> None:
    header.copy_(torch.tensor([99, -7, 3, 3, 5, 0, 0, 0]))


def wait_for_the_end(transport: Transport) -> None:
    """The real peer ends the run: its process exits, and this receive fails."""
    with contextlib.suppress(PeerError):
        transport.exchange(
            "waiting for the real peer to end the run", recvs=[(0 if transport.rank else 1, transport.empty_header())]
        )


def fake_worker(ctx: RoleContext, mode: str) -> None:
    cfg, transport = ctx.cfg, ctx.transport
    answer_server(ctx, len(ctx.shard(0)[0]))
    batch, classes = cfg.train.batch_size, label_classes(cfg, ctx.num_classes)
    batches = BatchMessage(1, batch, ctx.image_shape, classes, torch.float32, CPU)
    reply = FeedbackMessage(1, batch, ctx.image_shape, torch.float32, CPU)
    order = receive(transport, after_control(0), batches, transport.empty_header(), (Train,), 2)
    feedback = Feedback(order.iteration, d_seconds=0.0, feedback_seconds=0.0, numel=reply.payload.numel())
    buffer = reply.buffer
    if mode == "kind":
        Checkpoint(order.iteration).encode(reply.header)
    elif mode == "iteration":
        Feedback(order.iteration + 1, 0.0, 0.0, reply.payload.numel()).encode(reply.header)
    elif mode == "numel":
        Feedback(order.iteration, 0.0, 0.0, reply.payload.numel() - 1).encode(reply.header)
    elif mode == "garbage":
        garbage(reply.header)
    else:
        feedback.encode(reply.header)
        if mode == "nan":
            reply.payload[0] = float("nan")  # whole, but not finite
        elif mode == "nan-loss":
            reply.report(d_loss=[float("nan")], g_loss=[0.7])  # a worker's statistics
        elif mode == "short":
            buffer = reply.buffer[: len(reply.buffer) // 2]
        elif mode == "long":
            buffer = torch.cat([reply.buffer, reply.buffer])
    sends = [(0, buffer), (0, buffer)] if mode == "twice" else [(0, buffer)]
    transport.exchange("the fake worker's reply", sends=sends)
    wait_for_the_end(transport)


def fake_server(ctx: RoleContext, mode: str) -> None:
    cfg, transport = ctx.cfg, ctx.transport
    greet_workers(ctx, 0, [1])
    batch, classes = cfg.train.batch_size, label_classes(cfg, ctx.num_classes)
    packet = BatchMessage(1, batch, ctx.image_shape, classes, torch.float32, CPU)
    numel = packet.payload.numel()
    order = transport.header(Train(0, False, numel))
    sends = [(1, order), (1, packet.buffer)]  # after the handshake a TRAIN comes as a bare header first
    if mode == "kind":
        sends = [(1, transport.header(Feedback(0, 0.0, 0.0, 0)))]
    elif mode == "garbage":
        garbage(order)
        sends = [(1, order)]
    elif mode == "iteration":
        Train(3, False, numel).encode(packet.header)
    elif mode == "numel":
        Train(0, False, numel - 1).encode(packet.header)
    elif mode == "past-the-end":  # well formed, for an iteration the run does not have
        order = transport.header(Train(cfg.train.iterations, False, numel))
        Train(cfg.train.iterations, False, numel).encode(packet.header)
        sends = [(1, order), (1, packet.buffer)]
    else:
        Train(0, False, numel).encode(packet.header)
        half = packet.buffer[: len(packet.buffer) // 2]
        sends = [(1, order), (1, half if mode == "short" else torch.cat([packet.buffer, packet.buffer]))]
    transport.exchange("the fake server's order", sends=sends)
    wait_for_the_end(transport)


def main() -> None:
    role, mode, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
    fake_rank = 0 if role == "server" else 1
    if int(os.environ["RANK"]) != fake_rank:  # the real trainer, as `python -m mdgan_dist.train` runs it
        sys.argv = ["mdgan_dist.train", *overrides]
        sys.modules.pop("mdgan_dist.train", None)  # imported above: it runs as __main__ alone, as under -m
        runpy.run_module("mdgan_dist.train", run_name="__main__", alter_sys=True)
        return
    ctx = context(overrides)
    if role == "server":
        fake_server(ctx, mode)
    else:
        fake_worker(ctx, mode)


if __name__ == "__main__":
    main()
