"""data.clusters = K: labels for unlabelled images, each image's k-means cluster, so that the
conditional recipe trains without the dataset's labels (docs/design.md, "Clusters for unlabelled
data").

Server and workers agree on the clusters before training, by Lloyd's algorithm in ROUNDS rounds.
In each round every worker sends, for each cluster, the sum and the count of its images nearest
that cluster's centroid (in round 0 those of a random partition of its images: Lloyd started from
random partitions, so that no image leaves a worker), and the server answers with the centroids,
the totals' means, and the counts. Each worker then labels its images by their nearest final
centroid, and G draws each cluster as often as the last round counted images in it. The server
learns every worker's per-cluster sums and counts of every round; it keeps the final centroids
and the last round's counts in the run directory (clusters.pt).

`reference` runs the same rounds in one process: the standalone GAN's labels, and the tests'
oracle (the labels agreed on over the wire are the reference's, to the bit).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.data import Relabelled
from mdgan_dist.distributed.protocol import Centroids, ClusterSums
from mdgan_dist.errors import ConfigError
from mdgan_dist.run_directory import CLUSTERS_FILE
from mdgan_dist.seeding import generator

log = logging.getLogger(__name__)

ROUNDS = 20  # Lloyd's rounds; on mnist5k 50 rounds cluster no better than 20
STAGE = "agreeing on the clusters (data.clusters)"


def points_of(images: torch.Tensor) -> torch.Tensor:
    """Images [n, C, H, W] as points [n, C x H x W]."""
    return images.reshape(len(images), -1).float()


def nearest(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Each point's nearest centroid. The distances are computed pair by pair, not as a matrix
    product, whose rounding depends on the thread count: every process must assign alike."""
    return torch.cdist(points, centroids, compute_mode="donot_use_mm_for_euclid_dist").argmin(1)


def cluster_sums(points: torch.Tensor, assigned: torch.Tensor, clusters: int) -> torch.Tensor:
    """[clusters, D + 1]: each cluster's sum of its points, then their count."""
    out = torch.zeros(clusters, points.shape[1] + 1)
    out[:, :-1].index_add_(0, assigned, points)
    out[:, -1].index_add_(0, assigned, torch.ones(len(points)))
    return out


def first_sums(points: torch.Tensor, clusters: int, seed: int, worker: int) -> torch.Tensor:
    """Round 0: the sums of a random partition of a worker's points, from its own stream."""
    assigned = torch.randint(clusters, (len(points),), generator=generator(seed, "clusters", worker))
    return cluster_sums(points, assigned, clusters)


def round_sums(
    points: torch.Tensor, centroids: torch.Tensor | None, clusters: int, seed: int, worker: int
) -> torch.Tensor:
    """A worker's sums in a round: of a random partition first (centroids None), then of its points
    assigned to their nearest centroid."""
    if centroids is None:
        return first_sums(points, clusters, seed, worker)
    return cluster_sums(points, nearest(points, centroids), clusters)


def centroids_of(rows: list[torch.Tensor], previous: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The centroids from every worker's sums, added in worker order (the one order the server and
    the reference use), and the clusters' counts. A cluster with no point keeps its previous
    centroid (in round 0, the mean of all points)."""
    totals = rows[0].clone()
    for row in rows[1:]:
        totals += row
    sums, counts = totals[:, :-1], totals[:, -1]
    means = sums / counts.clamp(min=1).unsqueeze(1)
    fallback = previous if previous is not None else (sums.sum(0) / counts.sum()).expand_as(means)
    return torch.where(counts.unsqueeze(1) > 0, means, fallback), counts


def reference(
    shards: list[torch.Tensor], clusters: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The rounds in one process over every worker's images: the final centroids, the last
    round's counts, and each worker's labels."""
    points = [points_of(images) for images in shards]
    centroids, counts = None, torch.zeros(clusters)
    for _ in range(ROUNDS):
        rows = [round_sums(p, centroids, clusters, seed, worker) for worker, p in enumerate(points)]
        centroids, counts = centroids_of(rows, centroids)
    assert centroids is not None
    return centroids, counts, [nearest(p, centroids) for p in points]


def serve(ctx: RoleContext, ranks: list[int], per_rank: int, clusters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Server side: the rounds with the worker processes `ranks`, each hosting per_rank workers.
    Returns the final centroids and the last round's counts."""
    transport, width = ctx.transport, points_of(torch.zeros(1, *ctx.image_shape)).shape[1]
    centroids: torch.Tensor | None = None
    counts = torch.zeros(clusters)
    sent, received = transport.bytes_sent, transport.bytes_recv
    for round_ in range(ROUNDS):
        buffers = {
            rank: (transport.empty_header(), torch.empty(per_rank, clusters, width + 1, device=transport.wire))
            for rank in ranks
        }
        transport.exchange(
            STAGE,
            recvs=[transfer for rank, (header, sums) in buffers.items() for transfer in ((rank, header), (rank, sums))],
        )
        rows = []
        for rank, (header, sums) in buffers.items():
            transport.expect(header, rank, STAGE, ClusterSums, iteration=round_, numel=sums.numel())
            rows += list(sums.cpu())
        centroids, counts = centroids_of(rows, centroids)
        wire = torch.cat([centroids, counts.unsqueeze(1)], 1).to(transport.wire)
        header = transport.header(Centroids(round_, wire.numel()))
        transport.exchange(STAGE, sends=[transfer for rank in ranks for transfer in ((rank, header), (rank, wire))])
    assert centroids is not None
    log.info(
        "data.clusters: %d rounds, %d bytes sent to the workers and %d received",
        ROUNDS,
        transport.bytes_sent - sent,
        transport.bytes_recv - received,
    )
    return centroids, counts


def follow(
    ctx: RoleContext, workers: list[int], shards: list[torch.Tensor], clusters: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Worker side: the rounds for the workers this process hosts (their images `shards`); returns
    the last round's counts and each worker's labels."""
    transport, seed = ctx.transport, ctx.cfg.train.seed
    points = [points_of(images) for images in shards]
    centroids: torch.Tensor | None = None
    counts = torch.zeros(clusters)
    for round_ in range(ROUNDS):
        rows = torch.stack([round_sums(p, centroids, clusters, seed, w) for w, p in zip(workers, points, strict=True)])
        wire = rows.to(transport.wire)
        transport.exchange(STAGE, sends=[(0, transport.header(ClusterSums(round_, wire.numel()))), (0, wire)])
        header = transport.empty_header()
        received = torch.empty(clusters, points[0].shape[1] + 1, device=transport.wire)
        # The server waits for every worker's sums first.
        transport.exchange(STAGE, recvs=[(0, header), (0, received)], patience=2)
        transport.expect(header, 0, STAGE, Centroids, iteration=round_, numel=received.numel())
        centroids, counts = received[:, :-1].cpu(), received[:, -1].cpu()
    assert centroids is not None
    return counts, [nearest(p, centroids) for p in points]


def with_clusters(ctx: RoleContext, is_server: bool) -> RoleContext:
    """The context with each training image this process reads labelled by its cluster, data.clusters
    classes drawn as often as the clusters' sizes; the server writes the centroids to clusters.pt."""
    clusters = ctx.cfg.data.clusters
    labels = torch.full((len(ctx.plan.train),), -1, dtype=torch.int64)  # -1: an image this process never reads
    if ctx.peers is None:  # one process: the standalone GAN on the one shard
        images = ctx.shard(0)[0]
        centroids, counts, (assigned,) = reference([images], clusters, ctx.cfg.train.seed)
        labels[ctx.plan.shards[0]] = assigned
    elif is_server:
        processes = dist.get_world_size() - 1
        centroids, counts = serve(ctx, list(range(1, processes + 1)), ctx.num_workers // processes, clusters)
    else:
        per_rank = ctx.num_workers // (dist.get_world_size() - 1)
        workers = list(range((ctx.rank - 1) * per_rank, ctx.rank * per_rank))
        counts, assigned_each = follow(ctx, workers, [ctx.shard(worker)[0] for worker in workers], clusters)
        for worker, assigned in zip(workers, assigned_each, strict=True):
            labels[ctx.plan.shards[worker]] = assigned
    refuse_empty(counts)  # on every rank, so that each one's log says why the run stops
    if is_server:
        report(ctx.run_dir, centroids, counts, ctx.image_shape)
    plan = replace(ctx.plan, train=Relabelled(ctx.plan.train, labels, clusters), class_weights=counts)
    return replace(ctx, plan=plan)


def refuse_empty(counts: torch.Tensor) -> None:
    """A cluster that no image is nearest would have G draw its label from no real image."""
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        raise ConfigError(
            f"data.clusters={len(counts)}: no image is nearest cluster {empty[0]}'s centroid; use fewer clusters"
        )


def report(run_dir: Path, centroids: torch.Tensor, counts: torch.Tensor, image_shape: tuple[int, int, int]) -> None:
    """Logs the clusters' sizes and keeps the centroids (as images) and counts."""
    torch.save({"centroids": centroids.reshape(-1, *image_shape), "counts": counts}, run_dir / CLUSTERS_FILE)
    log.info(
        "data.clusters=%d: k-means over the workers' images in %d rounds, clusters of %d to %d images (%s)",
        len(counts),
        ROUNDS,
        int(counts.min()),
        int(counts.max()),
        run_dir / CLUSTERS_FILE,
    )
