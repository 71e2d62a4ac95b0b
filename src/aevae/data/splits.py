"""Deterministic train/val/test splits and the prepared-split file format."""

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import aevae.data.digits as digits
import aevae.data.mnist as mnist
from aevae.errors import DataError
from aevae.io import load_tensors, save_tensors

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Splits:
    """Raw pixel levels (uint8, 0..max_level) and labels of each split."""

    dataset: str
    max_level: int
    images: dict[str, Tensor]  # split -> (N, C, H, W) uint8
    labels: dict[str, Tensor]  # split -> (N,) int64

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.images["train"].shape[1:])

    def scaled(self, split: str) -> Tensor:
        """The images of `split` as float32 in [0, 1]."""
        return self.images[split].float() / self.max_level


def _carve(images: Tensor, labels: Tensor, fraction: float, generator: torch.Generator) -> tuple[tuple, tuple]:
    """Split off a random `fraction` of the samples: returns (rest, carved)."""
    order = torch.randperm(len(labels), generator=generator)
    n_carved = round(fraction * len(labels))
    rest, carved = order[n_carved:].sort().values, order[:n_carved].sort().values
    return (images[rest], labels[rest]), (images[carved], labels[carved])


def prepare_splits(data_cfg: Any) -> Splits:
    """Build the splits from the raw data set named in `data_cfg` (seeded, deterministic)."""
    generator = torch.Generator().manual_seed(data_cfg.split_seed)
    if data_cfg.name == "digits":
        pool, test = _carve(*digits.load_digits_raw(), data_cfg.test_fraction, generator)
        max_level = digits.MAX_LEVEL
    elif data_cfg.name == "mnist":
        raw = mnist.load_mnist_raw(data_cfg.root)
        pool, test = raw["train"], raw["test"]
        max_level = mnist.MAX_LEVEL
    else:
        raise DataError(f"unknown data set {data_cfg.name!r}")
    train, val = _carve(*pool, data_cfg.val_fraction, generator)
    parts = dict(zip(SPLIT_NAMES, (train, val, test)))
    return Splits(
        dataset=str(data_cfg.name),  # a plain str: the file is read with weights_only
        max_level=max_level,
        images={name: part[0].contiguous() for name, part in parts.items()},
        labels={name: part[1].contiguous() for name, part in parts.items()},
    )


def save_splits(splits: Splits, path: str | Path) -> Path:
    """Write the splits to one file (atomically)."""
    payload = {"dataset": splits.dataset, "max_level": splits.max_level}
    for name in SPLIT_NAMES:
        payload[f"{name}_images"] = splits.images[name]
        payload[f"{name}_labels"] = splits.labels[name]
    return save_tensors(path, payload)


def load_splits(path: str | Path) -> Splits:
    """Read a file written by `save_splits`, checking that it is complete and consistent."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: prepared data file not found (run the prepare stage first)")
    try:
        payload = load_tensors(path)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable prepared data file ({exc})") from exc
    try:
        images = {name: payload[f"{name}_images"] for name in SPLIT_NAMES}
        labels = {name: payload[f"{name}_labels"] for name in SPLIT_NAMES}
        splits = Splits(str(payload["dataset"]), int(payload["max_level"]), images, labels)
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path}: prepared data file lacks {exc}") from exc
    for name in SPLIT_NAMES:
        if images[name].dtype != torch.uint8 or images[name].ndim != 4 or len(images[name]) != len(labels[name]):
            raise DataError(f"{path}: split {name!r} has inconsistent images/labels")
    return splits


def load_or_prepare(data_cfg: Any) -> Splits:
    """The prepared file named by `data.prepared` if set, else splits built from the raw data."""
    if data_cfg.prepared:
        splits = load_splits(data_cfg.prepared)
        if splits.dataset != data_cfg.name:
            raise DataError(f"{data_cfg.prepared}: holds {splits.dataset!r}, but data.name is {data_cfg.name!r}")
        return splits
    return prepare_splits(data_cfg)
