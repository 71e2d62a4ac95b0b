"""Disentanglement scores: how well a code (N, D) separates known factors of variation (N, K).

`factors` holds each sample's class index per factor (the index of its value on the factor's
grid, as in a prepared sprites split); `codes` are the posterior means. Entropies and mutual
information are in nats. Every score is in [0, 1], higher is more disentangled (informativeness:
more predictive); a perfectly factorised code (one dimension per factor, any monotone map of it)
scores about 1 on each.
"""

from typing import NamedTuple

import numpy as np

MIG_BINS = 20  # equal-width bins per code dimension (Locatello et al. 2019, section 5)
# the scores' metric names, as a stage writes them
SCORE_NAMES = ("mig", "dci/disentanglement", "dci/completeness", "dci/informativeness", "factor_vae")


def discretize(codes: np.ndarray, bins: int = MIG_BINS) -> np.ndarray:
    """Each code dimension cut into `bins` equal-width bins over its range: (N, D) int64."""
    low, high = codes.min(0), codes.max(0)
    width = np.where(high > low, (high - low) / bins, 1.0)
    return np.clip(((codes - low) / width).astype(np.int64), 0, bins - 1)


def mutual_information(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(z_j; v_k) of every discretised code dimension j and factor k: (D, K), in nats."""
    from sklearn.metrics import mutual_info_score

    return np.array([[mutual_info_score(factor, code) for factor in factors.T] for code in discrete_codes.T])


def factor_entropy(factors: np.ndarray) -> np.ndarray:
    """H(v_k) of each factor over the samples: (K,), in nats."""
    from sklearn.metrics import mutual_info_score

    return np.array([mutual_info_score(factor, factor) for factor in factors.T])


class MIG(NamedTuple):
    score: float  # the mean over factors of `per_factor`
    per_factor: np.ndarray  # (K,) the gap of each factor
    normalized_mi: np.ndarray  # (D, K) I(z_j; v_k) / H(v_k)


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = MIG_BINS) -> MIG:
    """Mutual information gap (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs",
    eq. 6): per factor, the difference between the two largest I(z_j; v_k) over code dimensions,
    divided by H(v_k); averaged over factors. The mutual information is estimated from the codes
    discretised into `bins` equal-width bins (Locatello et al. 2019), not from samples of q(z|x)."""
    normalized = mutual_information(discretize(codes, bins), factors) / factor_entropy(factors)
    top = -np.sort(-normalized, axis=0)
    gaps = top[0] - (top[1] if len(top) > 1 else 0.0)
    return MIG(float(gaps.mean()), gaps, normalized)


def _normalized_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """Entropy of the distributions along `axis`, in units of log(their length): in [0, 1]."""
    n = p.shape[axis]
    if n < 2:
        return np.zeros(p.shape[1 - axis])
    logs = np.log(np.where(p > 0, p, 1.0))
    return -(p * logs).sum(axis) / np.log(n)


class DCI(NamedTuple):
    disentanglement: float
    completeness: float
    informativeness: float  # the mean of `r2`
    importance: np.ndarray  # (D, K) R_jk: how much code dimension j tells of factor k
    r2: np.ndarray  # (K,) held-out R^2 of each factor's regressor, clipped at 0


def disentanglement_completeness(importance: np.ndarray) -> tuple[float, float]:
    """Disentanglement and completeness of an importance matrix R (D, K) (Eastwood & Williams
    2018, section 3). Disentanglement: sum_j rho_j (1 - H_K(P_j.)), P_jk = R_jk / sum_k R_jk,
    rho_j = sum_k R_jk / sum R (a dimension that predicts nothing weighs nothing). Completeness:
    the mean over factors of 1 - H_D(P~_.k), P~_jk = R_jk / sum_j R_jk."""
    total = importance.sum()
    if total == 0:  # the code predicts nothing: no dimension holds a factor
        return 0.0, 0.0
    per_code = importance / np.where(importance.sum(1, keepdims=True) > 0, importance.sum(1, keepdims=True), 1.0)
    per_factor = importance / np.where(importance.sum(0, keepdims=True) > 0, importance.sum(0, keepdims=True), 1.0)
    rho = importance.sum(1) / total
    disentanglement = float((rho * (1 - _normalized_entropy(per_code, axis=1))).sum())
    completeness = float((1 - _normalized_entropy(per_factor, axis=0)).mean())
    return disentanglement, completeness


def dci(codes: np.ndarray, factors: np.ndarray, *, seed: int, train_fraction: float = 2 / 3, estimators: int = 100) -> DCI:
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018, "A Framework
    for the Quantitative Evaluation of Disentangled Representations").

    As in the paper, one regressor per factor predicts it from the code: here gradient-boosted
    trees (the family Locatello et al. 2019 use, as classifiers), on the factor's index scaled to
    unit variance; their feature importances form column k of R (`disentanglement_completeness`).
    Informativeness: the mean over factors of the regressors' R^2 on held-out codes, clipped at 0
    (1 - the paper's normalised squared error). The regressors fit a random `train_fraction` of
    the samples (drawn with `seed`) and are tested on the rest.
    """
    from sklearn.ensemble import GradientBoostingRegressor

    order = np.random.default_rng(seed).permutation(len(codes))
    train, test = np.split(order, [round(train_fraction * len(codes))])
    targets = (factors - factors.mean(0)) / np.where(factors.std(0) > 0, factors.std(0), 1.0)
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    r2 = np.zeros(factors.shape[1])
    for k in range(factors.shape[1]):
        model = GradientBoostingRegressor(n_estimators=estimators, random_state=seed)
        model.fit(codes[train], targets[train, k])
        importance[:, k] = model.feature_importances_
        r2[k] = max(0.0, model.score(codes[test], targets[test, k]))
    disentanglement, completeness = disentanglement_completeness(importance)
    return DCI(disentanglement, completeness, float(r2.mean()), importance, r2)


class FactorVAEScore(NamedTuple):
    score: float  # accuracy of the majority-vote classifier on the evaluation votes
    votes: np.ndarray  # (D, K) training votes: how often dimension j had the least variance with factor k fixed
    active: np.ndarray  # (D,) bool: the dimensions that took part


def factor_vae_score(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    seed: int,
    batch_size: int = 64,
    train_votes: int = 10_000,
    eval_votes: int = 5_000,
    prune_variance: float = 0.05,
) -> FactorVAEScore:
    """The FactorVAE disentanglement metric (Kim & Mnih 2018, "Disentangling by Factorising",
    section 4). Each vote fixes one factor (chosen uniformly) at the value of a random sample,
    draws `batch_size` samples sharing that value, divides the codes by their standard deviation
    over all samples and votes for the dimension of least variance within the batch; a
    majority-vote classifier maps each dimension to a factor from `train_votes` votes, and the
    score is its accuracy on `eval_votes` fresh votes. Dimensions whose codes vary less than
    `prune_variance` over all samples take no part: Kim & Mnih leave out collapsed dimensions,
    this threshold on the variance is Locatello et al.'s (2019)."""
    rng = np.random.default_rng(seed)
    variance = codes.var(0)
    active = variance >= prune_variance
    n_factors = factors.shape[1]
    if not active.any():
        return FactorVAEScore(0.0, np.zeros((codes.shape[1], n_factors), dtype=np.int64), active)
    scaled = codes[:, active] / np.sqrt(variance[active])
    dims = np.flatnonzero(active)

    def vote_counts(n_votes: int) -> np.ndarray:
        counts = np.zeros((codes.shape[1], n_factors), dtype=np.int64)
        chosen = rng.integers(n_factors, size=n_votes)
        anchors = rng.integers(len(codes), size=n_votes)
        for k in range(n_factors):
            votes = np.flatnonzero(chosen == k)
            order = np.argsort(factors[:, k], kind="stable")
            values, starts, sizes = np.unique(factors[order, k], return_index=True, return_counts=True)
            group = np.searchsorted(values, factors[anchors[votes], k])
            picks = starts[group, None] + (rng.random((len(votes), batch_size)) * sizes[group, None]).astype(np.int64)
            least = scaled[order[picks]].var(1, ddof=1).argmin(1)
            np.add.at(counts, (dims[least], k), 1)
        return counts

    train, test = vote_counts(train_votes), vote_counts(eval_votes)
    majority = train.argmax(1)
    score = test[np.arange(len(majority)), majority].sum() / test.sum()
    return FactorVAEScore(float(score), train, active)


def dimension_factors(normalized_mi: np.ndarray, dims: np.ndarray) -> list[tuple[int, int, float]]:
    """(dimension, factor, I(z_j; v_k) / H(v_k)) of each dimension in `dims`, naming the factor it
    shares the most information with; ordered by factor, then by that information, highest first."""
    named = [(int(j), int(normalized_mi[j].argmax()), float(normalized_mi[j].max())) for j in dims]
    return sorted(named, key=lambda row: (row[1], -row[2], row[0]))
