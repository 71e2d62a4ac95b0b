"""Class-balanced labelled subsets of a training split: the labels the probe fits its classifiers
on and the labels a semi-supervised model trains with, drawn the same way for both."""

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
