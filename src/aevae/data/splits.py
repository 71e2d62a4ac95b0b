"""Deterministic train/val/test splits and the prepared-split file format."""

import pickle
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import aevae.data.digits as digits
import aevae.data.mnist as mnist
import aevae.data.sprites as sprites
from aevae.errors import DataError
from aevae.io import load_tensors, save_tensors

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Splits:
    """Raw pixel levels (uint8, 0..max_level) and labels of each split; for a data set with known
    factors of variation (sprites), each image's factor indices and the values they stand for."""

    dataset: str
    max_level: int
    images: dict[str, Tensor]  # split -> (N, C, H, W) uint8
    labels: dict[str, Tensor]  # split -> (N,) int64
    factor_names: tuple[str, ...] = ()
    factor_values: tuple[tuple[float, ...], ...] = ()  # per factor: the value of each index
    factors: dict[str, Tensor] = field(default_factory=dict)  # split -> (N, K) int64 indices

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.images["train"].shape[1:])

    def scaled(self, split: str) -> Tensor:
        """The images of `split` as float32 in [0, 1]."""
        return self.images[split].float() / self.max_level

    def factor_table(self, split: str) -> Tensor:
        """The factor values (N, K) float64 of the images of `split`."""
        columns = [torch.tensor(values, dtype=torch.float64)[self.factors[split][:, k]] for k, values in enumerate(self.factor_values)]
        return torch.stack(columns, dim=1)


def _carve(tensors: Sequence[Tensor], fraction: float, generator: torch.Generator) -> tuple[tuple, tuple]:
    """Split off a random `fraction` of the samples (rows of every tensor): returns (rest, carved)."""
    order = torch.randperm(len(tensors[0]), generator=generator)
    n_carved = round(fraction * len(tensors[0]))
    rest, carved = order[n_carved:].sort().values, order[:n_carved].sort().values
    return tuple(t[rest] for t in tensors), tuple(t[carved] for t in tensors)


def prepare_splits(data_cfg: Any) -> Splits:
    """Build the splits from the raw data set named in `data_cfg` (seeded, deterministic)."""
    generator = torch.Generator().manual_seed(data_cfg.split_seed)
    factor_names, factor_values = (), ()
    if data_cfg.name == "digits":
        pool, test = _carve(digits.load_digits_raw(), data_cfg.test_fraction, generator)
        max_level = digits.MAX_LEVEL
    elif data_cfg.name == "sprites":
        pool, test = _carve(sprites.load_sprites_raw(), data_cfg.test_fraction, generator)
        max_level = sprites.MAX_LEVEL
        factor_names, factor_values = sprites.FACTOR_NAMES, tuple(factor.values for factor in sprites.FACTORS)
    elif data_cfg.name == "mnist":
        raw = mnist.load_mnist_raw(data_cfg.root)
        pool, test = raw["train"], raw["test"]
        max_level = mnist.MAX_LEVEL
    else:
        raise DataError(f"unknown data set {data_cfg.name!r}")
    train, val = _carve(pool, data_cfg.val_fraction, generator)
    parts = dict(zip(SPLIT_NAMES, (train, val, test)))
    return Splits(
        dataset=str(data_cfg.name),  # a plain str: the file is read with weights_only
        max_level=max_level,
        images={name: part[0].contiguous() for name, part in parts.items()},
        labels={name: part[1].contiguous() for name, part in parts.items()},
        factor_names=factor_names,
        factor_values=factor_values,
        factors={name: part[2].contiguous() for name, part in parts.items() if len(part) > 2},
    )


def save_splits(splits: Splits, path: str | Path) -> Path:
    """Write the splits to one file (atomically)."""
    payload = {"dataset": splits.dataset, "max_level": splits.max_level}
    for name in SPLIT_NAMES:
        payload[f"{name}_images"] = splits.images[name]
        payload[f"{name}_labels"] = splits.labels[name]
    if splits.factor_names:  # only data sets with known factors carry these keys
        payload["factor_names"] = list(splits.factor_names)
        payload["factor_values"] = [list(values) for values in splits.factor_values]
        payload |= {f"{name}_factors": splits.factors[name] for name in SPLIT_NAMES}
    return save_tensors(path, payload)


def load_splits(path: str | Path) -> Splits:
    """Read a file written by `save_splits`, checking that it is complete and consistent."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: prepared data file not found (run the prepare stage first)")
    try:
        payload = load_tensors(path)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable prepared data file (truncated or corrupt: {str(exc).splitlines()[0]}); run the prepare stage again (dvc repro)") from exc
    try:
        images = {name: payload[f"{name}_images"] for name in SPLIT_NAMES}
        labels = {name: payload[f"{name}_labels"] for name in SPLIT_NAMES}
        splits = Splits(str(payload["dataset"]), int(payload["max_level"]), images, labels)
        if "factor_names" in payload:
            splits.factor_names = tuple(map(str, payload["factor_names"]))
            splits.factor_values = tuple(tuple(map(float, values)) for values in payload["factor_values"])
            splits.factors = {name: payload[f"{name}_factors"] for name in SPLIT_NAMES}
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path}: prepared data file lacks {exc}") from exc
    for name in SPLIT_NAMES:
        if images[name].dtype != torch.uint8 or images[name].ndim != 4 or len(images[name]) != len(labels[name]):
            raise DataError(f"{path}: split {name!r} has inconsistent images/labels")
        factors = splits.factors.get(name)
        if factors is not None and (factors.dtype != torch.int64 or factors.shape != (len(labels[name]), len(splits.factor_names))):
            raise DataError(f"{path}: split {name!r} has inconsistent factors")
    if len(splits.factor_values) != len(splits.factor_names):
        raise DataError(f"{path}: {len(splits.factor_names)} factor names but {len(splits.factor_values)} value lists")
    return splits


def load_or_prepare(data_cfg: Any) -> Splits:
    """The prepared file named by `data.prepared` if set, else splits built from the raw data."""
    if data_cfg.prepared:
        splits = load_splits(data_cfg.prepared)
        if splits.dataset != data_cfg.name:
            raise DataError(f"{data_cfg.prepared}: holds {splits.dataset!r}, but data.name is {data_cfg.name!r}")
        return splits
    return prepare_splits(data_cfg)
