"""Data sets, prepared splits and the in-memory data module.

The data module (`datamodule.py`) is a LightningDataModule: its names are imported on first use
(PEP 562 `__getattr__`), so that a stage that only prepares or reads splits starts without
Lightning.
"""

from typing import Any

from aevae.data.splits import SPLIT_NAMES, Splits, load_or_prepare, load_splits, prepare_splits, read_source, save_splits, split_source

DATAMODULE_NAMES = ("InMemoryDataModule", "TensorBatches", "binarize")


def __getattr__(name: str) -> Any:
    """A name of `DATAMODULE_NAMES`, its module imported on first use."""
    if name not in DATAMODULE_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import aevae.data.datamodule as datamodule

    return getattr(datamodule, name)


__all__ = [
    "SPLIT_NAMES",
    "InMemoryDataModule",
    "Splits",
    "TensorBatches",
    "binarize",
    "load_or_prepare",
    "load_splits",
    "prepare_splits",
    "read_source",
    "save_splits",
    "split_source",
]
