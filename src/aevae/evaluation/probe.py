"""Semi-supervised probe: how well do frozen latent codes classify with few labels?

For each label budget (n labelled training images per class, or every training label) and each
seed, the caller draws one class-balanced labelled subset of the training split
(`aevae.data.subsets`), shared by every feature type, so the comparison between features is
paired. A multinomial logistic regression on
standardized features is fitted on the subset and scored on the whole test split.

Features: a trained model's `embed` (the posterior mean for a VAE), and the baselines raw pixels
and PCA (fitted on all training images, as many components as the latent size).
"""

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits
from torch import Tensor

from aevae.errors import ConfigError
from aevae.evaluation.batches import map_batches
from aevae.evaluation.pca import fit_pca

if TYPE_CHECKING:  # scikit-learn is imported by the functions that build classifiers
    from sklearn.pipeline import Pipeline

    from aevae.models import BaseAutoencoder

ALL_LABELS = "all"
FeaturePair = tuple[np.ndarray, np.ndarray]  # (train features, test features)
METRIC_NAME = re.compile(r"^probe/(?P<feature>[^/]+)/(?P<budget>[^/]+)/acc_(?P<stat>mean|std)$")


# --- label budgets ---------------------------------------------------------------------------
def label_budgets(labels_per_class: Sequence[int], all_labels: bool) -> list[int | None]:
    """The budgets in increasing order, `None` (every label) last."""
    return [*sorted(labels_per_class), *([None] if all_labels else [])]


def budget_name(budget: int | None) -> str:
    """`n10` for 10 labels per class, `all` for every label."""
    return ALL_LABELS if budget is None else f"n{budget}"


def check_budgets(train_labels: np.ndarray, budgets: Sequence[int | None]) -> None:
    """Reject a budget larger than the smallest class of the training split."""
    classes, counts = np.unique(train_labels, return_counts=True)
    smallest = int(counts.argmin())
    for budget in budgets:
        if budget is not None and budget > counts[smallest]:
            raise ConfigError(
                f"labels_per_class: a budget of {budget} labels per class exceeds the "
                f"{counts[smallest]} training images of class {classes[smallest]}"
            )


# --- features ----------------------------------------------------------------------------------
def embed_images(model: "BaseAutoencoder", images: Tensor, batch_size: int) -> np.ndarray:
    """The model's `embed` of `images`, computed in batches without gradients."""
    model.eval()
    return map_batches(model.embed, images.to(model.device), batch_size).cpu().numpy()


def pca_features(train_images: Tensor, test_images: Tensor, n_components: int, seed: int) -> FeaturePair:
    """Projections on the first `n_components` principal components of the training images."""
    pca = fit_pca(train_images, n_components, seed)
    return pca.codes(train_images), pca.codes(test_images)


def probe_features(
    models: Mapping[str, "BaseAutoencoder"],
    baselines: Sequence[str],
    train_images: Tensor,
    test_images: Tensor,
    pca_components: int | None,
    batch_size: int,
    seed: int,
) -> dict[str, FeaturePair]:
    """Train and test features of every model (its `embed`) and baseline (`pixels`, `pca`)."""
    features = {name: (embed_images(model, train_images, batch_size), embed_images(model, test_images, batch_size)) for name, model in models.items()}
    if "pixels" in baselines:
        features["pixels"] = (train_images.flatten(1).numpy(), test_images.flatten(1).numpy())
    if "pca" in baselines:
        features["pca"] = pca_features(train_images, test_images, pca_components, seed)
    return features


def resolve_pca_components(configured: int | None, models: Mapping[str, "BaseAutoencoder"]) -> int:
    """The configured number of PCA components, else the models' latent size (the largest when
    they differ: a baseline with a code at least as large as every model's)."""
    if configured is not None:
        return configured
    if not models:
        raise ConfigError("pca_components: no model to take it from; set it")
    return max(model.cfg.latent_dim for model in models.values())


# --- the protocol ------------------------------------------------------------------------------
def logistic_probe(C: float, max_iter: int, standardize: bool = True) -> "Pipeline":
    """Multinomial logistic regression (lbfgs, L2 strength 1/C), on standardized features
    unless `standardize` is false."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(*([StandardScaler()] if standardize else []), LogisticRegression(C=C, max_iter=max_iter))


def svm_probe(C: float, gamma: str | float, standardize: bool = True) -> "Pipeline":
    """An RBF-kernel support vector machine (one-vs-one), on standardized features unless
    `standardize` is false."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return make_pipeline(*([StandardScaler()] if standardize else []), SVC(C=C, gamma=gamma, kernel="rbf"))


def probe_runs(
    features: Mapping[str, FeaturePair],
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    subsets: Mapping[tuple[int | None, int], np.ndarray],
    make_classifier: Callable[[], "Pipeline"],
) -> list[dict[str, Any]]:
    """Test accuracy of one fit of `make_classifier()` per feature and labelled subset, each
    subset ((budget, seed) -> indices into the training rows) shared by all features.

    BLAS runs single-threaded: these fits are small, and threaded BLAS made them an order of
    magnitude slower.
    """
    n_classes = len(np.unique(train_labels))
    runs = []
    with threadpool_limits(limits=1, user_api="blas"):
        for (budget, seed), subset in subsets.items():
            for feature, (train_x, test_x) in features.items():
                classifier = make_classifier().fit(train_x[subset], train_labels[subset])
                runs.append(
                    {
                        "feature": feature,
                        "budget": budget_name(budget),
                        "labels_per_class": len(subset) / n_classes,
                        "seed": seed,
                        "accuracy": float(classifier.score(test_x, test_labels)),
                    }
                )
    return runs


def summarize(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std (0 for a single fit) of the accuracy per feature x budget."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["feature"], run["budget"]), []).append(run)
    summary = []
    for (feature, budget), group in groups.items():
        accuracy = np.array([run["accuracy"] for run in group])
        summary.append(
            {
                "feature": feature,
                "budget": budget,
                "labels_per_class": group[0]["labels_per_class"],
                "accuracy": float(accuracy.mean()),
                "accuracy_std": float(accuracy.std(ddof=1)) if len(accuracy) > 1 else 0.0,
                "fits": len(group),
            }
        )
    return summary


def probe_metrics(summary: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """`probe/<feature>/<budget>/acc_mean` and `.../acc_std` for every summary row."""
    metrics = {}
    for row in summary:
        prefix = f"probe/{row['feature']}/{row['budget']}"
        metrics[f"{prefix}/acc_mean"] = row["accuracy"]
        metrics[f"{prefix}/acc_std"] = row["accuracy_std"]
    return metrics


# --- presentation ------------------------------------------------------------------------------
def _budget_order(budget: str) -> float:
    return float("inf") if budget == ALL_LABELS else float(budget.removeprefix("n"))


def probe_table(metrics: Mapping[str, float]) -> str:
    """A Markdown table of `mean ± std` test accuracy: one row per feature, one column per budget.

    Reads the `probe/...` entries of a metrics dict (other entries are ignored).
    """
    cells: dict[str, dict[str, dict[str, float]]] = {}
    for name, value in metrics.items():
        match = METRIC_NAME.match(name)
        if match:
            cells.setdefault(match["feature"], {}).setdefault(match["budget"], {})[match["stat"]] = value
    budgets = sorted({budget for row in cells.values() for budget in row}, key=_budget_order)
    header = ["feature", *(f"{b.removeprefix('n')} / class" if b != ALL_LABELS else "all labels" for b in budgets)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for feature, row in cells.items():
        values = [f"{row[b]['mean']:.3f} ± {row[b]['std']:.3f}" if b in row else "" for b in budgets]
        lines.append("| " + " | ".join([feature, *values]) + " |")
    return "\n".join(lines) + "\n"
