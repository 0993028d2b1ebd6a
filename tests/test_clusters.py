"""data.clusters: the k-means that labels unlabelled images. In one process it finds clusters that
are there; over the wire (FL-GAN's workers here, MD-GAN's in the oracle's clusters case) and in the
standalone GAN it agrees with the one-process rounds to the bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import load_config
from mdgan_dist.algorithms.clusters import centroids_of, cluster_sums, reference
from mdgan_dist.algorithms.steps import sample_latent
from mdgan_dist.data import load_shard
from mdgan_dist.job import plan_data
from mdgan_dist.models.sampling import shown_labels
from mdgan_dist.run_directory import CLUSTERS_FILE
from multiproc import TINY, run_job, train_job


def blobs(count: int, centre: float, stream: torch.Generator) -> torch.Tensor:
    """`count` 1 x 4 x 4 images near the constant image `centre`."""
    return centre + 0.05 * torch.randn(count, 1, 4, 4, generator=stream)


def test_the_rounds_find_the_groups_spread_over_the_workers() -> None:
    """Three well-separated groups, each spread unevenly over two workers: every image's label is
    its group's, up to the clusters' order, and the centroids are the groups' means."""
    stream = torch.Generator().manual_seed(0)
    groups = [blobs(n, centre, stream) for n, centre in ((30, -0.8), (20, 0.0), (25, 0.7))]
    shards = [torch.cat([groups[0][:10], groups[1], groups[2][:5]]), torch.cat([groups[0][10:], groups[2][5:]])]
    truth = [torch.tensor([0] * 10 + [1] * 20 + [2] * 5), torch.tensor([0] * 20 + [2] * 20)]
    centroids, counts, labels = reference(shards, 3, seed=0)
    renamed = {
        int(label): int(group) for shard, true in zip(labels, truth, strict=True) for label, group in zip(shard, true)
    }
    assert sorted(renamed) == [0, 1, 2] and sorted(renamed.values()) == [0, 1, 2]  # one cluster per group
    for shard, true in zip(labels, truth, strict=True):
        assert [renamed[int(label)] for label in shard] == true.tolist()
    assert sorted(counts.tolist()) == [20.0, 25.0, 30.0]
    means = {group: members.reshape(len(members), -1).mean(0) for group, members in enumerate(groups)}
    for cluster, group in renamed.items():
        torch.testing.assert_close(centroids[cluster], means[group])
    again = reference(shards, 3, seed=0)
    assert torch.equal(again[0], centroids) and all(torch.equal(a, b) for a, b in zip(again[2], labels))


def test_a_cluster_no_point_is_nearest_keeps_its_centroid() -> None:
    points = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    previous = torch.tensor([[0.0, 0.0], [5.0, 5.0], [1.0, 1.0]])
    rows = [cluster_sums(points[:1], torch.tensor([0]), 3), cluster_sums(points[1:], torch.tensor([2]), 3)]
    centroids, counts = centroids_of(rows, previous)
    assert counts.tolist() == [1.0, 0.0, 1.0]
    assert centroids.tolist() == [[0.0, 0.0], [5.0, 5.0], [1.0, 1.0]]


@pytest.mark.parametrize(("algorithm", "world_size"), [("flgan", 3), ("standalone", 1)])
def test_the_clusters_agreed_on_are_the_one_process_rounds(tmp_path: Path, algorithm: str, world_size: int) -> None:
    """The centroids the run kept are the reference's to the bit, from the same shards; their
    counts cover every training image."""
    overrides = [*TINY, f"algorithm={algorithm}", "data.clusters=6", "train.iterations=2"]
    run_dir = run_job(tmp_path, world_size, overrides)
    cfg = load_config(run_dir)
    plan = plan_data(cfg, world_size - 1)
    shards = [load_shard(plan.train, shard)[0] for shard in plan.shards]
    centroids, counts, _ = reference(shards, 6, cfg.train.seed)
    kept = torch.load(run_dir / CLUSTERS_FILE)
    assert torch.equal(kept["centroids"].reshape(6, -1), centroids)
    assert torch.equal(kept["counts"], counts) and int(counts.sum()) == len(plan.train)
    assert (counts > 0).all()
    log = (tmp_path / "rank0.log").read_text()
    assert "data.clusters=6: k-means over the workers' images in 20 rounds" in log
    if algorithm == "flgan":  # each round, per worker: a header and 6 x (784 + 1) float32 each way
        each_way = 20 * 2 * (64 + 6 * 785 * 4)
        assert f"data.clusters: 20 rounds, {each_way} bytes sent to the workers and {each_way} received" in log


def test_g_draws_each_cluster_as_often_as_its_images() -> None:
    """Training draws labels in proportion to the clusters' sizes; the scored samples give each
    cluster its share of the samples, the largest remainders rounded up."""
    _, labels = sample_latent(torch.Generator().manual_seed(0), 20_000, 4, 3, torch.tensor([1.0, 3.0, 0.0]))
    assert labels is not None
    shares = torch.bincount(labels, minlength=3) / 20_000
    assert shares[2] == 0 and abs(shares[1].item() - 0.75) < 0.02
    assert torch.bincount(shown_labels(10, 3, torch.tensor([1.0, 1.0, 2.0]))).tolist() == [3, 2, 5]
    assert shown_labels(5, 3).tolist() == [0, 1, 2, 0, 1]


def test_a_cluster_left_empty_stops_every_rank_with_the_reason(tmp_path: Path) -> None:
    """Identical images: one cluster takes them all, the others stay empty. Server and workers each
    refuse the run before training, each log naming the cause (not a lost peer)."""
    for folder in ("a", "b"):
        (tmp_path / "images" / folder).mkdir(parents=True)
        for i in range(20):  # two shards of at least train.batch_size (16) once some are held out
            Image.new("L", (28, 28), 128).save(tmp_path / "images" / folder / f"{i}.png")
    data = ["data.name=imagefolder", f"data.root={tmp_path / 'images'}", "data.image_size=28", "data.channels=1"]
    job = train_job(tmp_path, 3, [*TINY, *data, "algorithm=flgan", "data.clusters=3", "train.iterations=2"])
    assert job.wait(120) == [2, 2, 2], job.outputs()
    for rank in range(3):
        log = (tmp_path / f"rank{rank}.log").read_text()
        assert "data.clusters=3: no image is nearest cluster 1's centroid; use fewer clusters" in log, log
    assert not (tmp_path / "run" / CLUSTERS_FILE).exists()
