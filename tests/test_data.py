"""Data sets, splits, the prepared-split format, binarization and the in-memory batches."""

import gzip
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from aevae.data import InMemoryDataModule, TensorBatches, load_splits, prepare_splits, save_splits
from aevae.data.mnist import FILES, load_mnist_raw
from aevae.errors import DataError

DIGITS = dict(
    name="digits", root=None, download=False, prepared=None, split_seed=0, val_fraction=0.2, test_fraction=0.2,
    train_classes=None, binarize="none", threshold=0.5, batch_size=64, eval_batch_size=256,
)


def data_cfg(**changes):
    return OmegaConf.create({**DIGITS, **changes})


def test_digits_splits_are_disjoint_complete_and_seeded():
    splits = prepare_splits(data_cfg())
    sizes = {name: len(labels) for name, labels in splits.labels.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == round(0.2 * 1797)
    assert splits.image_shape == (1, 8, 8)
    assert splits.scaled("train").max() == 1.0 and splits.scaled("train").min() == 0.0
    rows = {name: {tuple(img.flatten().tolist()) for img in imgs} for name, imgs in splits.images.items()}
    # digits has a handful of duplicate images; the splits must share (almost) none
    assert len(rows["train"] & rows["test"]) <= 3
    again = prepare_splits(data_cfg())
    assert torch.equal(again.images["test"], splits.images["test"])
    other = prepare_splits(data_cfg(split_seed=1))
    assert not torch.equal(other.labels["test"], splits.labels["test"])


def test_prepared_file_round_trip_and_corruption(tmp_path):
    splits = prepare_splits(data_cfg())
    path = save_splits(splits, tmp_path / "digits.pt")
    loaded = load_splits(path)
    assert loaded.dataset == "digits" and loaded.max_level == 16
    assert all(torch.equal(loaded.images[s], splits.images[s]) for s in splits.images)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="digits.pt: not a readable prepared data file"):
        load_splits(path)
    with pytest.raises(DataError, match="not found"):
        load_splits(tmp_path / "missing.pt")


def test_mnist_loader_reads_the_standard_files(mnist_root):
    raw = load_mnist_raw(mnist_root)
    images, labels = raw["train"]
    assert images.shape == (60000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60000,) and labels.dtype == torch.int64
    assert raw["test"][0].shape == (10000, 1, 28, 28)
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first training labels
    assert torch.bincount(raw["test"][1]).tolist()[0] == 980


@pytest.fixture
def mnist_copy(mnist_root, tmp_path):
    for name in FILES:
        shutil.copy(mnist_root / name, tmp_path / name)
    return tmp_path


def test_mnist_rejects_truncated_gzip(mnist_copy):
    target = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: not a readable gzip file"):
        load_mnist_raw(mnist_copy)


def test_mnist_rejects_wrong_md5(mnist_copy):
    target = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(target.read_bytes()))
    raw[-1] ^= 1
    target.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: md5 .* does not match"):
        load_mnist_raw(mnist_copy)


def test_mnist_rejects_missing_file_and_directory(mnist_copy, tmp_path):
    (mnist_copy / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: file not found"):
        load_mnist_raw(mnist_copy)
    with pytest.raises(DataError, match="MNIST directory not found"):
        load_mnist_raw(tmp_path / "nowhere")


def datamodule(**changes):
    cfg = data_cfg(**changes)
    dm = InMemoryDataModule(prepare_splits(cfg), cfg, seed=0)
    dm.setup()
    return dm


def test_class_filter_keeps_only_those_classes_in_train_and_val_but_all_in_test():
    dm = datamodule(train_classes=[3])
    assert set(dm.tensors["train"][1].tolist()) == {3}
    assert set(dm.tensors["val"][1].tolist()) == {3}
    assert set(dm.tensors["test"][1].tolist()) == set(range(10))


def test_static_binarization_is_fixed_and_dynamic_redraws_each_epoch():
    static = datamodule(binarize="static")
    images = static.tensors["train"][0]
    assert set(images.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(images, datamodule(binarize="static").tensors["train"][0])

    dynamic = datamodule(binarize="dynamic")
    assert len(dynamic.tensors["train"][0].unique()) > 2  # kept in [0, 1], drawn per batch
    batches = dynamic.batches("train", shuffle=False)
    first = torch.cat([b[0] for b in batches])
    second = torch.cat([b[0] for b in batches])
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)
    assert torch.equal(dynamic.tensors["val"][0], datamodule(binarize="dynamic").tensors["val"][0])


def test_threshold_binarization():
    dm = datamodule(binarize="threshold", threshold=0.5)
    scaled = dm.splits.scaled("train")
    assert torch.equal(dm.tensors["train"][0], (scaled > 0.5).float())


def test_shuffled_batches_cover_each_sample_once_per_epoch_and_change_order_with_epoch():
    images, labels = torch.arange(103.0).view(-1, 1, 1, 1), torch.arange(103)
    epoch = {"n": 0}
    batches = TensorBatches(images, labels, 10, shuffle=True, seed=1, epoch_fn=lambda: epoch["n"])
    first = torch.cat([b[2] for b in batches])
    assert len(batches) == 11 and sorted(first.tolist()) == list(range(103))
    assert torch.equal(torch.cat([b[2] for b in batches]), first)  # same epoch, same order
    epoch["n"] = 1
    assert not torch.equal(torch.cat([b[2] for b in batches]), first)
    for x, y, index in batches:
        assert torch.equal(x.flatten().long(), index) and torch.equal(y, index)


def test_sharding_over_ranks_has_no_overlap():
    images, labels = torch.zeros(101, 1, 1, 1), torch.arange(101)
    for shuffle in (True, False):
        shards = [
            torch.cat([b[2] for b in TensorBatches(images, labels, 8, shuffle=shuffle, rank=r, world_size=2)])
            for r in range(2)
        ]
        assert not set(shards[0].tolist()) & set(shards[1].tolist())
        if shuffle:  # equal steps on every rank: the remainder is dropped
            assert len(shards[0]) == len(shards[1]) == 50
        else:  # evaluation: every sample exactly once
            assert sorted(torch.cat(shards).tolist()) == list(range(101))
