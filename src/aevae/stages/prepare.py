"""The prepare stage: the seeded train/val/test split of a data set, written to one file."""

import logging
from typing import Any

from aevae.config import validate
from aevae.data import prepare_splits, save_splits

log = logging.getLogger(__name__)


def run(cfg: Any) -> dict[str, float]:
    """Build the splits of `cfg.data` and write them to `cfg.output`; returns the split sizes."""
    validate(cfg)
    splits = prepare_splits(cfg.data)
    save_splits(splits, cfg.output)
    sizes = {f"{name}_images": float(len(labels)) for name, labels in splits.labels.items()}
    print(f"prepare {cfg.data.name}: " + ", ".join(f"{name} {int(n)}" for name, n in sizes.items()) + f" -> {cfg.output}", flush=True)
    return sizes
