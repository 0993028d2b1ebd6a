"""Start-up handshake of every distributed algorithm: each worker proves it runs the server's
config, and the server learns the shard sizes, before any training."""

from __future__ import annotations

import torch

from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.distributed.protocol import Abort, Go, Refusal, ServerHello, WorkerHello
from mdgan_dist.errors import ConfigError, PeerError
from mdgan_dist.trajectory import digest

STAGE = "start-up handshake"


def message_shapes(ctx: RoleContext) -> torch.Tensor:
    """What the handshake agrees on besides the config: batch size and sample shape."""
    return torch.tensor([ctx.cfg.train.batch_size, *ctx.image_shape], dtype=torch.int64, device=ctx.device)


def mismatch_message(rank: int) -> str:
    return (
        f"worker rank {rank} was started with a configuration that differs from the server's: "
        "start every rank with the same command line, config files and dataset"
    )


def greet_workers(ctx: RoleContext, start: int, workers: list[int]) -> list[int]:
    """Server side: sends digest, start iteration (0 or a checkpoint's) and message shapes;
    returns each worker's shard size."""
    transport = ctx.transport
    replies = {rank: transport.empty_header() for rank in workers}
    transport.exchange(STAGE, sends=_hellos(ctx, digest(ctx.cfg), start, workers), recvs=list(replies.items()))
    answers = {rank: transport.expect(buffer, rank, STAGE, WorkerHello, Abort) for rank, buffer in replies.items()}
    refused = [rank for rank, answer in answers.items() if isinstance(answer, Abort)]
    # The verdict, to the workers that agreed: they start (or stop) together, never on their own.
    verdict = transport.header(Abort(refused[0]) if refused else Go())
    transport.exchange(STAGE, sends=[(rank, verdict) for rank in workers if rank not in refused])
    if refused:
        raise ConfigError(mismatch_message(refused[0]))
    return [answer.shard_size for answer in answers.values() if isinstance(answer, WorkerHello)]


def refuse_workers(ctx: RoleContext, workers: list[int]) -> None:
    """Server side, when it cannot start: every worker stops with a message instead of a timeout."""
    refusal = ctx.transport.header(Refusal())
    ctx.transport.exchange(STAGE, sends=[(rank, refusal) for rank in workers])


def _hellos(ctx: RoleContext, config_digest: int, start: int, workers: list[int]) -> list[tuple[int, torch.Tensor]]:
    shapes = message_shapes(ctx).to(ctx.transport.wire)
    hello = ctx.transport.header(ServerHello(config_digest, start, shapes.numel()))
    return [transfer for rank in workers for transfer in ((rank, hello), (rank, shapes))]


def answer_server(ctx: RoleContext, shard_size: int) -> int:
    """Worker side: checks the server's digest and shapes against its own, answers with its shard
    size, waits for the server's verdict on all workers, and returns the iteration to start from."""
    transport, shapes = ctx.transport, message_shapes(ctx)
    hello_buffer, server_shapes = transport.empty_header(), torch.empty_like(shapes)
    transport.exchange(STAGE, recvs=[(0, hello_buffer)])
    hello = transport.expect(hello_buffer, 0, STAGE, ServerHello, Refusal)
    if not isinstance(hello, ServerHello):  # a Refusal
        raise ConfigError("the server refused to start (its log, rank 0, says why)")
    if hello.shapes_numel != shapes.numel():  # checked once the kind is known: a Refusal announces no payload
        raise PeerError(
            transport.rank, 0, STAGE, f"announced {hello.shapes_numel} payload values, expected {shapes.numel()}"
        )
    transport.exchange(STAGE, recvs=[(0, server_shapes)])
    agrees = hello.config_digest == digest(ctx.cfg) and torch.equal(server_shapes, shapes)
    reply = WorkerHello(shard_size) if agrees else Abort(transport.rank)
    transport.exchange(STAGE, sends=[(0, transport.header(reply))])
    if not agrees:
        raise ConfigError(mismatch_message(transport.rank))
    verdict_buffer = transport.empty_header()
    transport.exchange(STAGE, recvs=[(0, verdict_buffer)])
    verdict = transport.expect(verdict_buffer, 0, STAGE, Go, Abort)
    if isinstance(verdict, Abort):
        raise ConfigError(mismatch_message(verdict.rank))
    return hello.start
