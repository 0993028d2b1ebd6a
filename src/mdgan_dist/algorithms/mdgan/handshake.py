"""Start-up handshake: every worker proves it runs the server's config before any training."""

from __future__ import annotations

import torch

from mdgan_dist.distributed.protocol import Header, Kind
from mdgan_dist.distributed.transport import Transport
from mdgan_dist.errors import ConfigError

STAGE = "start-up handshake"


REFUSED = -1  # start iteration that tells the workers the server cannot start (its log says why)


def mismatch_message(rank: int) -> str:
    return (
        f"worker rank {rank} was started with a configuration that differs from the server's: "
        "start every rank with the same command line, config files and dataset"
    )


def greet_workers(
    transport: Transport, config_digest: int, start: int, shapes: torch.Tensor, workers: list[int]
) -> list[int]:
    """Server side: sends digest, start iteration (0, a checkpoint's, or REFUSED) and message
    shapes; returns each worker's shard size."""
    replies = {rank: transport.empty_header() for rank in workers}
    transport.exchange(
        STAGE, sends=_hellos(transport, config_digest, start, shapes, workers), recvs=list(replies.items())
    )
    answers = {
        rank: transport.expect(buffer, rank, STAGE, [Kind.HELLO, Kind.ABORT]) for rank, buffer in replies.items()
    }
    refused = [rank for rank, answer in answers.items() if answer.kind == Kind.ABORT]
    # The verdict, to the workers that agreed: they start (or stop) together, never on their own.
    verdict = Header(Kind.ABORT, arg0=refused[0]) if refused else Header(Kind.HELLO)
    transport.exchange(STAGE, sends=[(rank, transport.header(verdict)) for rank in workers if rank not in refused])
    if refused:
        raise ConfigError(mismatch_message(refused[0]))
    return [answers[rank].arg0 for rank in workers]


def refuse_workers(transport: Transport, shapes: torch.Tensor, workers: list[int]) -> None:
    """Server side, when it cannot start: every worker stops with a message instead of a timeout."""
    transport.exchange(STAGE, sends=_hellos(transport, 0, REFUSED, shapes, workers))


def _hellos(
    transport: Transport, config_digest: int, start: int, shapes: torch.Tensor, workers: list[int]
) -> list[tuple[int, torch.Tensor]]:
    hello = transport.header(Header(Kind.HELLO, arg0=config_digest, arg1=start, numel=shapes.numel()))
    return [transfer for rank in workers for transfer in ((rank, hello), (rank, shapes))]


def answer_server(transport: Transport, config_digest: int, shapes: torch.Tensor, shard_size: int) -> int:
    """Worker side: checks the server's digest and shapes against its own, answers with its shard
    size, waits for the server's verdict on all workers, and returns the iteration to start from."""
    hello, server_shapes = transport.empty_header(), torch.empty_like(shapes)
    transport.exchange(STAGE, recvs=[(0, hello), (0, server_shapes)])
    header = transport.expect(hello, 0, STAGE, [Kind.HELLO])
    if header.arg1 == REFUSED:
        raise ConfigError("the server refused to start (its log, rank 0, says why)")
    agrees = header.arg0 == config_digest and torch.equal(server_shapes, shapes)
    reply = Header(Kind.HELLO, arg0=shard_size) if agrees else Header(Kind.ABORT, arg0=transport.rank)
    transport.exchange(STAGE, sends=[(0, transport.header(reply))])
    if not agrees:
        raise ConfigError(mismatch_message(transport.rank))
    verdict_buffer = transport.empty_header()
    transport.exchange(STAGE, recvs=[(0, verdict_buffer)])
    verdict = transport.expect(verdict_buffer, 0, STAGE, [Kind.HELLO, Kind.ABORT])
    if verdict.kind == Kind.ABORT:
        raise ConfigError(mismatch_message(verdict.arg0))
    return header.arg1
