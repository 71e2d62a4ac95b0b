"""Data sets, splits, the prepared-split format, binarization and the in-memory batches."""

import gzip
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import Tensor

from aevae.data import InMemoryDataModule, TensorBatches, load_splits, prepare_splits, save_splits
from aevae.data.mnist import FILES, load_mnist_raw
from aevae.errors import DataError
from aevae.io import load_tensors, save_tensors
from conftest import REPO_ROOT

pytestmark = pytest.mark.fast  # all quick (`make test-fast`), the prepare CLI's one-line error included

DIGITS = dict(
    name="digits", path=None, download=False, prepared=None, split_seed=0, val_fraction=0.2, test_fraction=0.2,
    train_classes=None, binarize="none", threshold=0.5, batch_size=64, eval_batch_size=256, codes="mean",
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


def test_vendored_mnist_files_match_their_md5_sums_and_readme(mnist_root):
    assert mnist_root == REPO_ROOT / "data" / "raw" / "mnist"
    readme = (mnist_root / "README.md").read_text()
    for name, expected in FILES.items():
        packed = (mnist_root / name).read_bytes()
        assert hashlib.md5(packed).hexdigest() == expected.gz_md5, name
        assert hashlib.md5(gzip.decompress(packed)).hexdigest() == expected.md5, name
        assert name in readme and expected.gz_md5 in readme and expected.md5 in readme


@pytest.fixture
def mnist_copy(mnist_root, tmp_path):
    """A copy of the vendored MNIST directory that a test may damage."""
    return Path(shutil.copytree(mnist_root, tmp_path / "mnist"))


def alter_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def mnist_error(root: Path) -> str:
    """The message of the DataError that loading `root` raises; it must be a single line."""
    with pytest.raises(DataError) as info:
        load_mnist_raw(root)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", sorted(FILES))
def test_mnist_rejects_a_missing_file(mnist_copy, name):
    (mnist_copy / name).unlink()
    assert mnist_error(mnist_copy).startswith(f"{mnist_copy / name}: file not found")


@pytest.mark.parametrize("name", sorted(FILES))
def test_mnist_rejects_an_altered_gz_file_by_md5(mnist_copy, name):
    target = mnist_copy / name
    alter_one_byte(target)
    got = hashlib.md5(target.read_bytes()).hexdigest()
    assert mnist_error(mnist_copy) == (
        f"{target}: md5 {got} does not match the expected {FILES[name].gz_md5} (corrupt or altered file)"
    )


def test_mnist_rejects_a_truncated_gz_file(mnist_copy):
    target = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:100])
    pattern = rf"{re.escape(str(target))}: md5 \w+ does not match the expected {FILES[target.name].gz_md5} .*"
    assert re.fullmatch(pattern, mnist_error(mnist_copy))


def test_mnist_checks_the_decompressed_bytes_too(mnist_copy, monkeypatch):
    """Behind the gz md5: an unreadable gzip stream and altered content are still caught."""
    name = "t10k-labels-idx1-ubyte.gz"
    target = mnist_copy / name
    original = target.read_bytes()

    target.write_bytes(original[:100])
    monkeypatch.setitem(FILES, name, FILES[name]._replace(gz_md5=hashlib.md5(original[:100]).hexdigest()))
    assert f"{target}: not a readable gzip file" in mnist_error(mnist_copy)

    raw = bytearray(gzip.decompress(original))
    raw[-1] ^= 1
    target.write_bytes(gzip.compress(bytes(raw), mtime=0))
    monkeypatch.setitem(FILES, name, FILES[name]._replace(gz_md5=hashlib.md5(target.read_bytes()).hexdigest()))
    assert re.fullmatch(rf"{re.escape(str(target))}: md5 \w+ does not match the expected {FILES[name].md5} .*",
                        mnist_error(mnist_copy))


def test_mnist_rejects_a_missing_directory(tmp_path):
    assert mnist_error(tmp_path / "nowhere").startswith(f"{tmp_path / 'nowhere'}: MNIST directory not found")


def test_prepare_cli_reports_an_altered_mnist_file_in_one_line_and_writes_nothing(mnist_copy, tmp_path):
    target = mnist_copy / "train-labels-idx1-ubyte.gz"
    alter_one_byte(target)
    output = tmp_path / "m.pt"
    result = subprocess.run(
        [sys.executable, "pipelines/prepare.py", "data=mnist", f"data.path={mnist_copy}", f"output={output}",
         f"hydra.run.dir={tmp_path / 'h'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and str(target) in lines[0] and "md5" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not output.exists()


def test_save_tensors_gives_the_same_bytes_for_the_same_tensors(tmp_path):
    images = torch.arange(600).to(torch.uint8).view(6, 1, 10, 10)
    tensors = {"images": images, "labels": torch.arange(6), "name": "x", "max_level": 255}
    first, second = save_tensors(tmp_path / "a.pt", tensors), save_tensors(tmp_path / "sub" / "b.pt", tensors)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.pt", "b.pt", "sub"]  # no temporary files left
    assert torch.equal(load_tensors(second)["images"], tensors["images"])


def test_prepared_digits_file_is_byte_stable(tmp_path):
    cfg = OmegaConf.create({key: value for key, value in DIGITS.items() if key != "download"})
    md5s = {
        hashlib.md5(save_splits(prepare_splits(cfg), tmp_path / name).read_bytes()).hexdigest()
        for name in ("one.pt", "two.pt")
    }
    assert len(md5s) == 1


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


def sample_ids(batches) -> Tensor:
    """The samples a pass over `batches` yields, in order: each test image holds its own index."""
    return torch.cat([batch[0].flatten().long() for batch in batches])


def test_shuffled_batches_cover_each_sample_once_per_epoch_and_change_order_with_epoch():
    images, labels = torch.arange(103.0).view(-1, 1, 1, 1), torch.arange(103)
    epoch = {"n": 0}
    batches = TensorBatches(images, labels, 10, shuffle=True, seed=1, epoch_fn=lambda: epoch["n"])
    first = sample_ids(batches)
    assert len(batches) == 11 and sorted(first.tolist()) == list(range(103))
    assert torch.equal(sample_ids(batches), first)  # same epoch, same order
    epoch["n"] = 1
    assert not torch.equal(sample_ids(batches), first)
    for batch in batches:
        assert torch.equal(batch[0].flatten().long(), batch[1])  # images and labels stay paired


def test_sharding_over_ranks_has_no_overlap():
    images, labels = torch.arange(101.0).view(-1, 1, 1, 1), torch.arange(101)
    for shuffle in (True, False):
        shards = [
            sample_ids(TensorBatches(images, labels, 8, shuffle=shuffle, rank=r, world_size=2)) for r in range(2)
        ]
        assert not set(shards[0].tolist()) & set(shards[1].tolist())
        if shuffle:  # equal steps on every rank: the remainder is dropped
            assert len(shards[0]) == len(shards[1]) == 50
        else:  # evaluation: every sample exactly once
            assert sorted(torch.cat(shards).tolist()) == list(range(101))
