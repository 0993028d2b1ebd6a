"""Datasets, shards and real-batch sampling for the workers.

`open_dataset` gives the train or held-out part of a dataset, `split_indices` cuts the train part
into one shard per worker, `load_shard` reads a shard into memory, and `ShardSampler` draws a
worker's real batches from it (`PoissonSampler` under privacy.*). `Relabelled` gives a dataset's
images other labels (data.clusters).
"""

from mdgan_dist.data.base import PARTS, ImageDataset, Relabelled
from mdgan_dist.data.datasets import DATASETS, open_dataset
from mdgan_dist.data.sampler import PoissonSampler, Sampler, ShardSampler
from mdgan_dist.data.sharding import load_shard, split_indices

__all__ = [
    "DATASETS",
    "PARTS",
    "ImageDataset",
    "PoissonSampler",
    "Relabelled",
    "Sampler",
    "ShardSampler",
    "load_shard",
    "open_dataset",
    "split_indices",
]
