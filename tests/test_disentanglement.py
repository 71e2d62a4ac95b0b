"""Disentanglement scores against hand-made codes whose answer is known: a factorised code scores
about 1 on every score; an entangled one (a rotation of it) scores low, so each "about 1" check
fails on it."""

import math

import numpy as np
import pytest
from scipy.linalg import hadamard
from scipy.stats import ortho_group

from aevae.evaluation.disentanglement import (
    dci,
    dimension_factors,
    disentanglement_completeness,
    factor_vae_score,
    mig,
)

pytestmark = pytest.mark.fast  # every test here is a quick unit test (`make test-fast`)

SIZES = (3, 6, 8, 10)  # values per factor: 1,440 samples, every combination once
FAST = dict(estimators=20)  # DCI classifiers: enough stages for these clean codes
VOTES = dict(train_votes=2000, eval_votes=1000)


@pytest.fixture(scope="module")
def factors():
    return np.stack(np.meshgrid(*(np.arange(n) for n in SIZES), indexing="ij"), -1).reshape(-1, len(SIZES))


def standardized(factors):
    values = factors.astype(float)
    return (values - values.mean(0)) / values.std(0)


def factorised(factors, seed=0):
    """One dimension per factor, each through its own monotone map, in shuffled order, plus two
    collapsed dimensions of tiny noise."""
    rng = np.random.default_rng(seed)
    z = standardized(factors)
    z = np.stack([z[:, 0], np.tanh(z[:, 1]), np.exp(0.5 * z[:, 2]), -3 * z[:, 3]], 1)[:, rng.permutation(len(SIZES))]
    return np.concatenate([z, 1e-3 * rng.standard_normal((len(z), 2))], 1)


def rotated(factors):
    """Every dimension a random mixture of every factor (a random orthogonal map)."""
    return standardized(factors) @ ortho_group.rvs(len(SIZES), random_state=0)


def hadamard_mixed(factors):
    """Every dimension an equal-weight mixture of every factor: the most entangled rotation."""
    return standardized(factors) @ hadamard(len(SIZES)) / math.sqrt(len(SIZES))


def scores(codes, factors):
    d = dci(codes, factors, seed=0, **FAST)
    return {
        "mig": mig(codes, factors).score,
        "dci/disentanglement": d.disentanglement,
        "dci/completeness": d.completeness,
        "dci/informativeness": d.informativeness,
        "factor_vae": factor_vae_score(codes, factors, seed=0, **VOTES).score,
    }


def assert_disentangled(values):
    low = {name: round(value, 3) for name, value in values.items() if value < 0.95}
    assert not low, f"scores below 0.95: {low}"


def test_a_factorised_code_scores_about_one(factors):
    assert_disentangled(scores(factorised(factors), factors))


@pytest.mark.parametrize("entangle", [rotated, hadamard_mixed], ids=["random_rotation", "hadamard"])
def test_an_entangled_code_fails_the_check_and_scores_low(factors, entangle):
    values = scores(entangle(factors), factors)
    with pytest.raises(AssertionError, match="scores below 0.95"):
        assert_disentangled(values)
    # a random rotation in four dimensions often leaves one factor dominant in a dimension: lower, not nil
    assert values["mig"] < 0.3
    assert values["dci/disentanglement"] < 0.6 and values["dci/completeness"] < 0.6
    if entangle is hadamard_mixed:  # no dimension stands out for any factor: votes fall by chance
        assert values["mig"] < 0.05 and values["dci/disentanglement"] < 0.05 and values["dci/completeness"] < 0.05
        assert values["factor_vae"] < 0.4


def test_mig_is_the_gap_between_the_two_most_informative_dimensions(factors):
    z = standardized(factors)
    duplicated = np.concatenate([z, z[:, :1]], 1)  # factor 0 held twice: no gap
    result = mig(duplicated, factors)
    assert result.per_factor[0] == pytest.approx(0.0, abs=1e-12)
    assert result.per_factor[1:] == pytest.approx(1.0)
    assert result.normalized_mi[:, 0].tolist() == pytest.approx([1, 0, 0, 0, 1], abs=1e-12)


@pytest.mark.parametrize(
    ("importance", "expected"),
    [
        (np.eye(3), (1.0, 1.0)),  # one dimension per factor
        (np.ones((3, 3)), (0.0, 0.0)),  # every dimension tells of every factor alike
        (np.array([[1.0, 1.0, 1.0], [0, 0, 0], [0, 0, 0]]), (0.0, 1.0)),  # one dimension for all
        (np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), (1.0, 5 / 6)),  # factor 0 split over two of four
        (np.zeros((2, 2)), (0.0, 0.0)),
    ],
)
def test_dci_disentanglement_and_completeness_of_known_importances(importance, expected):
    assert disentanglement_completeness(importance) == pytest.approx(expected)


def test_dci_informativeness_is_held_out_r2(factors):
    rng = np.random.default_rng(0)
    informative = dci(standardized(factors), factors, seed=0, **FAST)
    noise = dci(rng.standard_normal((len(factors), len(SIZES))), factors, seed=0, **FAST)
    assert informative.informativeness == pytest.approx(1.0, abs=0.02)
    assert noise.r2 == pytest.approx([0.0] * len(SIZES), abs=0.02)  # nothing to predict from


def test_factor_vae_score_leaves_collapsed_dimensions_out_and_is_seeded(factors):
    codes = factorised(factors)
    result = factor_vae_score(codes, factors, seed=0, **VOTES)
    assert result.active.tolist() == [True] * len(SIZES) + [False, False]
    assert result.votes[len(SIZES) :].sum() == 0
    again = factor_vae_score(codes, factors, seed=0, **VOTES)
    assert again.score == result.score and np.array_equal(again.votes, result.votes)
    collapsed = factor_vae_score(np.zeros_like(codes), factors, seed=0, **VOTES)
    assert collapsed.score == 0.0 and not collapsed.active.any()


def test_dimensions_are_named_and_ordered_by_their_factor():
    normalized_mi = np.array([[0.1, 0.7], [0.9, 0.0], [0.2, 0.3], [0.05, 0.6]])
    assert dimension_factors(normalized_mi, np.array([0, 1, 2, 3])) == [(1, 0, 0.9), (0, 1, 0.7), (3, 1, 0.6), (2, 1, 0.3)]
    assert dimension_factors(normalized_mi, np.array([2])) == [(2, 1, 0.3)]
