"""Data sets, prepared splits and the in-memory data module."""

from aevae.data.datamodule import InMemoryDataModule, TensorBatches, binarize
from aevae.data.splits import SPLIT_NAMES, Splits, load_or_prepare, load_splits, prepare_splits, save_splits

__all__ = [
    "SPLIT_NAMES",
    "InMemoryDataModule",
    "Splits",
    "TensorBatches",
    "binarize",
    "load_or_prepare",
    "load_splits",
    "prepare_splits",
    "save_splits",
]
