"""The prepare stage: the seeded train/val/test split of a data set, written to one file, and the
manifest of its source files beside it."""

import logging
from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from aevae.config import DataConfig, validate
from aevae.data import read_source, save_splits, split_source
from aevae.data.manifest import manifest_path, manifest_text, write_manifest
from aevae.errors import require

log = logging.getLogger(__name__)


@dataclass
class PrepareConfig:
    data: DataConfig = MISSING
    output: str = MISSING  # the prepared split file to write; the manifest of its sources goes beside it
    workers: Optional[int] = MISSING  # processes that decode a folder's images; null: one per available CPU

    def __post_init__(self) -> None:
        require(self.workers is None or self.workers > 0, "workers", f"must be > 0 or null, got {self.workers}")
        self.data.require_path()


def run(cfg: PrepareConfig) -> dict[str, float]:
    """Read the data set of `cfg.data`, split it and write it to `cfg.output` (the manifest
    beside it); nothing is written unless every file reads. Returns the split sizes."""
    cfg = validate(cfg)
    source = read_source(cfg.data, cfg.workers)
    splits = split_source(source, cfg.data)
    save_splits(splits, cfg.output)
    manifest = write_manifest(manifest_path(cfg.output), manifest_text(source.files))
    sizes = {f"{name}_images": float(len(labels)) for name, labels in splits.labels.items()}
    shape = "x".join(map(str, splits.image_shape))
    notes = "".join(f"; {note}" for note in source.notes)
    print(
        f"prepare {cfg.data.name}: " + ", ".join(f"{name} {int(n)}" for name, n in sizes.items())
        + f" ({'vectors' if splits.is_vectors else 'images'} {shape}) -> {cfg.output}, {manifest.name}{notes}",
        flush=True,
    )
    return sizes
