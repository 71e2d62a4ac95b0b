"""What the prepared data has, read in one place: labels and their class names, whether the
samples are images or vectors, where they came from; and the uses a stage skips for what the data
lacks, each with the one line that says why (printed by the stage, shown by the report)."""

from typing import Any

import torch

SKIP_VECTORS = {
    "denoising": "skipped: the data are vectors, and the corruptions act on pixels in [0, 1]",
    "figures": "only the latent map: vectors have no picture",
    "complexity": "no complexity-normalised scores (<model>_error_per_<name>, nor in the ensemble): vectors have no neighbouring pixels",
}
SKIP_ONE_CLASS = {  # labelled, but training images of one class only (the anomaly layout's `good`)
    "probe": "skipped: the training images are of one class (the normal ones), so a probe has no classes to tell apart",
    "classifier": "skipped: the training images are of one class (the normal ones), so no classifier judges samples (no FID in its features, no classes covered)",
}
SKIP_NO_LABELS = {
    "probe": "skipped: the data have no labels, so there is nothing for a probe to predict",
    "classifier": "skipped: the data have no labels, so no classifier judges samples (no FID in its features, no classes covered)",
    "anomaly": "skipped: the data have no labels, so no class (or `good` folder) is known to be normal",
}


def has_labels(splits: Any) -> bool:
    """Whether the training images carry labels (unlabelled data: every label -1)."""
    return splits.has_labels


def class_names(splits: Any) -> tuple[str, ...]:
    """The name of each class 0..K-1: the data's own names, else the labels as numbers."""
    names = splits.class_names
    if names or not has_labels(splits):
        return names
    return tuple(str(label) for label in range(int(max(int(labels.max()) for labels in splits.labels.values())) + 1))


def n_classes(splits: Any) -> int:
    """The number of classes (0 for unlabelled data)."""
    return len(class_names(splits))


def is_vectors(splits: Any) -> bool:
    """Whether the samples are feature vectors (N, D) rather than images (N, C, H, W)."""
    return splits.is_vectors


def source(splits: Any) -> str:
    """Where the data came from: the user's path, or the built-in data set's name."""
    return splits.source or splits.dataset


def manifest_md5(splits: Any) -> str | None:
    """The md5 of the manifest of the source files (None for a built-in data set)."""
    return splits.manifest_md5 or None


def skipped(splits: Any) -> dict[str, str]:
    """Use -> why it is skipped on these data."""
    if not has_labels(splits):
        by_labels = dict(SKIP_NO_LABELS)
    elif len(splits.labels["train"].unique()) < 2:
        by_labels = dict(SKIP_ONE_CLASS)
    else:
        by_labels = {}
    return by_labels | (dict(SKIP_VECTORS) if is_vectors(splits) else {})


def label_counts(splits: Any, split: str) -> dict[str, int]:
    """The number of images of each class in `split` (class name -> count); {} when unlabelled."""
    names = class_names(splits)
    counts = torch.bincount(splits.labels[split][splits.labels[split] >= 0], minlength=len(names)) if names else torch.zeros(0)
    return {name: int(count) for name, count in zip(names, counts)}
