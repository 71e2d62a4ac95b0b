"""Anomaly detectors over feature rows (pixels, PCA projections, a model's latent codes), fitted
on normal rows only: scikit-learn estimators (LOF, Isolation Forest, one-class SVM) and the two
that scikit-learn has no detector for (kNN distance, Mahalanobis distance), all with its
`fit(X)` / `score_samples(X)` API (higher = more normal). Built from `conf/anomaly.yaml`'s
`detectors` by Hydra's `instantiate`."""

from collections.abc import Mapping
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits


class KNNDistance:
    """The distance to the `n_neighbors`-th nearest normal row (Ramaswamy et al. 2000; PyOD's
    `KNN(method="largest")`), negated: `score_samples` is higher for more normal rows."""

    def __init__(self, n_neighbors: int = 5) -> None:
        self.n_neighbors = n_neighbors

    def fit(self, X: np.ndarray) -> "KNNDistance":
        from sklearn.neighbors import NearestNeighbors

        self.neighbors_ = NearestNeighbors(n_neighbors=self.n_neighbors).fit(X)
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        return -self.neighbors_.kneighbors(X)[0][:, -1]


class Mahalanobis:
    """The squared Mahalanobis distance to the mean of the normal rows (their empirical
    covariance, pseudo-inverted), negated."""

    def fit(self, X: np.ndarray) -> "Mahalanobis":
        from sklearn.covariance import EmpiricalCovariance

        self.covariance_ = EmpiricalCovariance().fit(X)
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        return -self.covariance_.mahalanobis(X)


def detector_scores(detector: Any, normal: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Anomaly scores (higher = more anomalous, float64) of `test` rows by an unfitted
    `detector` fitted on the `normal` rows (one BLAS thread: the same numbers on any machine)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return -np.asarray(detector.fit(normal).score_samples(test), dtype=np.float64)


def feature_scores(detectors: Mapping[str, Any], names: list[str], features: str, normal: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
    """`<features>_<detector>` -> the scores of each detector of `names` (built by
    `detectors[name]()`) over one kind of feature rows."""
    return {f"{features}_{name}": detector_scores(detectors[name](), normal, test) for name in names}
