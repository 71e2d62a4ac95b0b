"""One-class anomaly detection metrics (anomalies are the positive class) and a PCA baseline."""

from collections import defaultdict
from statistics import mean

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_roc

from aevae.evaluation.pca import fit_pca


def anomaly_targets(labels: Tensor, normal_class: int) -> Tensor:
    """1 for every image not of `normal_class` (an anomaly), 0 for the normal class."""
    return (labels != normal_class).long()


def _unit_interval(scores: Tensor) -> Tensor:
    """Dense ranks of `scores` scaled into [0, 1]: order and ties kept.

    torchmetrics reads scores outside [0, 1] as logits and applies a sigmoid, which saturates
    large scores (reconstruction errors in nats) into ties; ranks avoid that.
    """
    _, ranks = torch.unique(scores, return_inverse=True)
    return ranks.double() / max(1, int(ranks.max()))


def detection_metrics(scores: Tensor, targets: Tensor) -> dict[str, float]:
    """AUROC and AUPRC (average precision) of anomaly `scores` (higher = more anomalous)."""
    ranked = _unit_interval(scores)
    return {"auroc": float(binary_auroc(ranked, targets)), "auprc": float(binary_average_precision(ranked, targets))}


def roc_points(scores: Tensor, targets: Tensor, max_points: int) -> tuple[Tensor, Tensor]:
    """The ROC curve (fpr, tpr), subsampled to at most `max_points` points, ends included."""
    fpr, tpr, _ = binary_roc(_unit_interval(scores), targets)
    keep = torch.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().long().unique()
    return fpr[keep], tpr[keep]


def pca_scores(train_images: Tensor, test_images: Tensor, n_components: int, seed: int) -> Tensor:
    """Squared reconstruction error per test image of a PCA fitted on `train_images` (without
    clipping: the error of the linear projection itself), float64 (N,)."""
    pca = fit_pca(train_images, n_components, seed).pca
    test = test_images.flatten(1).double().cpu().numpy()
    recon = pca.inverse_transform(pca.transform(test))
    return torch.from_numpy(((test - recon) ** 2).sum(1))


def class_means(metrics: dict[str, float]) -> dict[str, float]:
    """`<name>/mean` over the classes of every `<name>/class_<c>` metric."""
    groups: defaultdict[str, list[float]] = defaultdict(list)
    for key, value in metrics.items():
        groups[key.rsplit("/", 1)[0]].append(value)
    return {f"{group}/mean": mean(values) for group, values in groups.items()}
