"""The data card: what the study ran on (source, samples per split and class, shape, pixel
statistics, the manifest's hash, what was skipped and why) and a grid of sample images, written by
the evaluate stage and shown at the top of the report."""

from pathlib import Path
from typing import Any

import torch

from aevae.data import SPLIT_NAMES
from aevae.reporting.plots import save_image_rows
from aevae.stages.data_facts import class_names, is_vectors, label_counts, manifest_md5, skipped, source

SAMPLES_PER_ROW = 10
SAMPLE_ROWS = 2  # without labels
MAX_CLASS_ROWS = 10  # with labels: a row per class, the first classes


def data_card(splits: Any, samples_figure: str | None) -> dict[str, Any]:
    """The card's facts as plain values (JSON): per-channel pixel mean and std of the training
    images in [0, 1] (vectors: of every feature value); `samples_figure`: the grid of sample
    images, relative to the card's file."""
    train = splits.scaled("train")
    dims = (0,) if is_vectors(splits) else (0, 2, 3)
    per_channel = not is_vectors(splits)
    return {
        "dataset": str(splits.dataset),
        "source": source(splits),
        "kind": "vectors" if is_vectors(splits) else "images",
        "shape": list(splits.image_shape),
        "channels": int(splits.image_shape[0]) if per_channel else None,
        "classes": list(class_names(splits)),
        "counts": {split: {"total": len(splits.labels[split]), **label_counts(splits, split)} for split in SPLIT_NAMES},
        "mean": [round(float(value), 4) for value in (train.mean(dims) if per_channel else train.mean().reshape(1))],
        "std": [round(float(value), 4) for value in (train.std(dims) if per_channel else train.std().reshape(1))],
        "manifest_md5": manifest_md5(splits),
        "skipped": skipped(splits),
        "samples_figure": samples_figure,
    }


def save_sample_grid(splits: Any, path: str | Path) -> Path | None:
    """The first training images: a row per class (at most `MAX_CLASS_ROWS`, titled with the
    class's name), or `SAMPLE_ROWS` rows without labels; None for vectors (nothing to show)."""
    if is_vectors(splits):
        return None
    images, labels = splits.scaled("train"), splits.labels["train"]
    names = class_names(splits)[:MAX_CLASS_ROWS]
    if names:
        rows = [images[labels == label][:SAMPLES_PER_ROW] for label in range(len(names))]
        titles = list(names)
    else:
        rows = list(images[: SAMPLES_PER_ROW * SAMPLE_ROWS].split(SAMPLES_PER_ROW))
        titles = ["train"] * len(rows)
    return save_image_rows(rows, titles, path, title=f"{source(splits)}: training images")
