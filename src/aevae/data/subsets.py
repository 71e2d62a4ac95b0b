"""Class-balanced labelled subsets of a training split: the labels the probe fits its classifiers
on and the labels a semi-supervised model trains with, drawn the same way for both."""

from collections.abc import Sequence

import numpy as np

Budget = int | None  # labelled images per class; None: every training label


def labelled_subset(train_labels: np.ndarray, budget: Budget, seed: int) -> np.ndarray:
    """Sorted indices into the training split: `budget` images of every class, drawn with `seed`.

    Each class is shuffled once per seed and its first `budget` images are taken, so for one seed
    a smaller budget's subset lies inside a larger one's.
    """
    if budget is None:
        return np.arange(len(train_labels))
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(train_labels == c))[:budget] for c in np.unique(train_labels)]
    return np.sort(np.concatenate(picks))


def labelled_subsets(train_labels: np.ndarray, budgets: Sequence[Budget], seeds: Sequence[int]) -> dict[tuple[Budget, int], np.ndarray]:
    """(budget, seed) -> `labelled_subset`, for every budget and seed; the `None` budget, which
    no seed changes, once (with the first seed)."""
    return {(budget, seed): labelled_subset(train_labels, budget, seed) for budget in budgets for seed in (seeds if budget is not None else seeds[:1])}
