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
from aevae.data.arrays import read_arrays
from aevae.data.folder import available_cpus, read_folder
from aevae.data.images import Shape
from aevae.data.manifest import file_of, manifest_text, text_md5
from aevae.data.source import Source
from aevae.errors import DataError
from aevae.io import load_tensors, save_tensors

SPLIT_NAMES = ("train", "val", "test")
USER_DATA = ("folder", "arrays")  # read from data.path by their own modules; the others are built in


@dataclass
class Splits:
    """Raw pixel levels (uint8, 0..max_level) and labels of each split; for a data set with known
    factors of variation (sprites), each image's factors and the values they stand for.

    Vectors (tabular data, `is_vectors`) are float32 (N, D), standardised with the training
    split's `feature_mean` and `feature_std`. Labels are -1 throughout where the data has none
    (`has_labels`). The keys past `factors` are written to the file only where they are set, so
    the built-in data sets' files keep their bytes. A model's codes (data=codes, read from the
    model, never from a file) are vectors that also hold which units of the code they are and, to
    be drawn afresh, each value's posterior std (`noise_std`).
    """

    dataset: str
    max_level: int
    images: dict[str, Tensor]  # split -> (N, C, H, W) uint8, or (N, D) float32 vectors
    labels: dict[str, Tensor]  # split -> (N,) int64
    factor_names: tuple[str, ...] = ()
    factor_values: tuple[tuple[float, ...], ...] = ()  # per factor: the value of each index
    factors: dict[str, Tensor] = field(default_factory=dict)  # split -> (N, K) int64 indices
    class_names: tuple[str, ...] = ()  # label -> class name; empty: the labels are the names (0..9 of MNIST)
    normal_label: int | None = None  # the anomaly layout's `good` class: train and val hold only it
    source: str = ""  # data.path as given, for the user's data (folder, arrays); empty for a built-in set
    manifest_md5: str = ""  # md5 of the manifest of the source files, for the user's data
    feature_mean: Tensor | None = None  # vectors: (D,) float32, the training split's, subtracted
    feature_std: Tensor | None = None  # vectors: (D,) float32, divided by (1 where a feature is constant)
    noise_std: dict[str, Tensor] = field(default_factory=dict)  # data=codes, codes: sample: split -> (N, D) posterior std, standardised
    code_units: Tensor | None = None  # data=codes: (D,) int64, the units of the model's code the vectors hold

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.images["train"].shape[1:])

    @property
    def is_vectors(self) -> bool:
        """Whether the data are vectors (N, D) float32 rather than images."""
        return self.images["train"].is_floating_point()

    @property
    def has_labels(self) -> bool:
        return bool((self.labels["train"] >= 0).all())

    def scaled(self, split: str) -> Tensor:
        """The images of `split` as float32 in [0, 1] (vectors: as stored, standardised)."""
        return self.images[split] if self.is_vectors else self.images[split].float() / self.max_level

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


def read_source(data_cfg: Any, workers: int | None = None) -> Source:
    """The data set named in `data_cfg`, as read (`workers`: processes that decode a folder; None:
    one per available CPU)."""
    name = str(data_cfg.name)
    if name == "digits":
        return Source({"train": digits.load_digits_raw()}, digits.MAX_LEVEL)
    if name == "sprites":
        return Source({"train": sprites.load_sprites_raw()}, sprites.MAX_LEVEL, factor_names=sprites.FACTOR_NAMES, factor_values=tuple(factor.values for factor in sprites.FACTORS))
    if name == "codes":
        raise DataError("data=codes: a model's codes are read by the stages that train (train, reference), from the model's checkpoint in data.path")
    if name not in ("mnist", *USER_DATA):
        raise DataError(f"unknown data set {name!r}")
    if data_cfg.path is None:
        raise DataError(f"data.path: data={name} reads its files from data.path; set it (or data.prepared, the prepare stage's file)")
    if name == "mnist":
        raw = mnist.load_mnist_raw(data_cfg.path)  # checks every file first
        return Source(raw, mnist.MAX_LEVEL, files=tuple(file_of(Path(data_cfg.path) / file, file) for file in mnist.FILES))
    shape = Shape(data_cfg.channels, data_cfg.image_size, str(data_cfg.resize))
    if name == "folder":
        return read_folder(data_cfg.path, shape, workers or available_cpus())
    return read_arrays(data_cfg.path, shape)


def split_source(source: Source, data_cfg: Any) -> Splits:
    """The seeded train/val/test split of `source`: a test split carved from "train" where the data
    has none, then a val split; vectors standardised with the training split's statistics."""
    generator = torch.Generator().manual_seed(data_cfg.split_seed)
    pool, test = source.parts["train"], source.parts.get("test")
    if test is None:
        pool, test = _carve(pool, data_cfg.test_fraction, generator)
    train, val = (pool, source.parts["val"]) if "val" in source.parts else _carve(pool, data_cfg.val_fraction, generator)
    parts = dict(zip(SPLIT_NAMES, (train, val, test)))
    for split in ("train", "test"):
        if len(parts[split][0]) == 0:
            raise DataError(f"{source.path or data_cfg.name}: the {split} split is empty ({sum(len(p[0]) for p in parts.values())} samples in all); add data")
    images = {name: part[0].contiguous() for name, part in parts.items()}
    splits = Splits(
        dataset=str(data_cfg.name),  # a plain str: the file is read with weights_only
        max_level=source.max_level,
        images=images,
        labels={name: part[1].contiguous() for name, part in parts.items()},
        factor_names=source.factor_names,
        factor_values=source.factor_values,
        factors={name: part[2].contiguous() for name, part in parts.items() if len(part) > 2},
        class_names=source.class_names,
        normal_label=source.normal_label,
        source=source.path,
        manifest_md5=text_md5(manifest_text(source.files)) if source.path else "",
    )
    if splits.is_vectors:
        train64 = images["train"].double()
        mean, std = train64.mean(0), train64.std(0, correction=0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        splits.images = {name: ((x.double() - mean) / std).float() for name, x in images.items()}
        splits.feature_mean, splits.feature_std = mean.float(), std.float()
        splits.noise_std = {name: (noise.double() / std).float() for name, noise in source.noise_std.items()}
        splits.code_units = source.code_units
    return splits


def prepare_splits(data_cfg: Any) -> Splits:
    """Build the splits from the raw data set named in `data_cfg` (seeded, deterministic)."""
    return split_source(read_source(data_cfg), data_cfg)


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
    optional = {
        "class_names": list(splits.class_names),
        "normal_label": splits.normal_label,
        "source": splits.source,
        "manifest_md5": splits.manifest_md5,
        "feature_mean": splits.feature_mean,
        "feature_std": splits.feature_std,
    }
    payload |= {key: value for key, value in optional.items() if value is not None and not (isinstance(value, (list, str)) and not value)}
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
        splits.class_names = tuple(map(str, payload.get("class_names", ())))
        splits.normal_label = None if payload.get("normal_label") is None else int(payload["normal_label"])
        splits.source, splits.manifest_md5 = str(payload.get("source", "")), str(payload.get("manifest_md5", ""))
        splits.feature_mean, splits.feature_std = payload.get("feature_mean"), payload.get("feature_std")
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path}: prepared data file lacks {exc}") from exc
    _check(splits, path)
    return splits


def _check(splits: Splits, path: Path) -> None:
    """Refuse splits whose tensors do not fit together (a damaged or hand-made file)."""
    vectors = splits.images["train"].dtype == torch.float32 and splits.images["train"].ndim == 2
    for name in SPLIT_NAMES:
        images, labels = splits.images[name], splits.labels[name]
        kind_ok = (images.dtype, images.ndim) == ((torch.float32, 2) if vectors else (torch.uint8, 4))
        if not kind_ok or images.shape[1:] != splits.images["train"].shape[1:] or labels.dtype != torch.int64 or labels.shape != (len(images),):
            raise DataError(f"{path}: split {name!r} has inconsistent images/labels")
        factors = splits.factors.get(name)
        if factors is not None and (factors.dtype != torch.int64 or factors.shape != (len(labels), len(splits.factor_names))):
            raise DataError(f"{path}: split {name!r} has inconsistent factors")
    if len(splits.factor_values) != len(splits.factor_names):
        raise DataError(f"{path}: {len(splits.factor_names)} factor names but {len(splits.factor_values)} value lists")
    labels = torch.cat(list(splits.labels.values()))
    if not (labels.ge(0).all() or labels.eq(-1).all()):
        raise DataError(f"{path}: labels are neither all -1 (unlabelled) nor all >= 0")
    if splits.class_names and labels.ge(len(splits.class_names)).any():
        raise DataError(f"{path}: a label past the {len(splits.class_names)} class names")
    if splits.normal_label is not None and not 0 <= splits.normal_label < len(splits.class_names):
        raise DataError(f"{path}: normal_label {splits.normal_label} is not a class")
    shape = (splits.images["train"].shape[1],) if vectors else None
    for stat in (splits.feature_mean, splits.feature_std):
        if (stat is None) == vectors or (stat is not None and (stat.dtype != torch.float32 or stat.shape != shape)):
            raise DataError(f"{path}: vectors need their feature mean and std (and images none)")


def load_or_prepare(data_cfg: Any) -> Splits:
    """The prepared file named by `data.prepared` if set, else splits built from the raw data."""
    if data_cfg.prepared:
        splits = load_splits(data_cfg.prepared)
        if splits.dataset != data_cfg.name:
            raise DataError(f"{data_cfg.prepared}: holds {splits.dataset!r}, but data.name is {data_cfg.name!r}")
        return splits
    return prepare_splits(data_cfg)
