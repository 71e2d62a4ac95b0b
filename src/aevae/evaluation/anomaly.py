"""Anomaly detection protocols (cases of normal and anomalous labels), metrics (anomalies are
the positive class), the PCA baseline and the combination of scores."""

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import mean

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_roc

from aevae.evaluation.pca import PixelPCA


@dataclass(frozen=True)
class Case:
    """One detection task of a protocol: a model trained on the `normal` labels' training images
    tells the test images of the `anomalous` labels from those of the `normal` ones (test images
    of other labels are left out)."""

    name: str  # the metrics' last key part and the model's folder, e.g. class_3
    normal: tuple[int, ...]
    anomalous: tuple[int, ...]

    def test_mask(self, labels: Tensor) -> Tensor:
        """Which test images the case scores (normal or anomalous labels)."""
        return torch.isin(labels, torch.tensor(self.normal + self.anomalous, device=labels.device))

    def targets(self, labels: Tensor) -> Tensor:
        """1 for an anomalous label, 0 otherwise (labels of the images `test_mask` keeps)."""
        return torch.isin(labels, torch.tensor(self.anomalous, device=labels.device)).long()


def one_class_cases(classes: Sequence[int], chosen: Sequence[int]) -> list[Case]:
    """Ruff et al. (2018): each chosen class in turn is normal, every other class anomalous."""
    return [Case(f"class_{c}", (c,), tuple(o for o in classes if o != c)) for c in chosen]


def one_anomalous_cases(classes: Sequence[int], chosen: Sequence[int]) -> list[Case]:
    """Each chosen class in turn is the anomaly, every other class normal."""
    return [Case(f"anomalous_{c}", tuple(o for o in classes if o != c), (c,)) for c in chosen]


PROTOCOLS: dict[str, Callable[[Sequence[int], Sequence[int]], list[Case]]] = {
    "one_class": one_class_cases,
    "one_anomalous": one_anomalous_cases,
}


def protocol_cases(protocol: str, classes: Sequence[int], chosen: Sequence[int] | None) -> list[Case]:
    """The cases of `protocol` over the data's `classes`, one per class of `chosen` (None: every class)."""
    classes = sorted(classes)
    return PROTOCOLS[protocol](classes, classes if chosen is None else chosen)


def defect_cases(normal: int, names: Sequence[str]) -> list[Case]:
    """The anomaly layout (`train/good`, `test/<defect>`): one model trained on the `normal` label
    tells every defect from it (`defects`), and each defect alone (`defect_<name>`); `names` are
    the class names by label."""
    defects = tuple(label for label in range(len(names)) if label != normal)
    return [Case("defects", (normal,), defects), *(Case(f"defect_{names[label]}", (normal,), (label,)) for label in defects)]


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


def pca_scores(fitted: PixelPCA, test_images: Tensor) -> Tensor:
    """Squared reconstruction error per test image of a fitted PCA (without clipping: the
    error of the linear projection itself), float64 (N,)."""
    pca = fitted.pca
    test = test_images.flatten(1).double().cpu().numpy()
    recon = pca.inverse_transform(pca.transform(test))
    return torch.from_numpy(((test - recon) ** 2).sum(1))


def standardized_sum(scores: Mapping[str, Tensor], normal_scores: Mapping[str, Tensor]) -> Tensor:
    """The sum of the `scores` of several methods, each standardised by the mean and standard
    deviation of its scores of normal held-out images (`normal_scores`, same keys): equal
    weights, with no anomaly seen; float64 (N,)."""
    total = torch.zeros_like(next(iter(scores.values())), dtype=torch.float64)
    for method, values in scores.items():
        reference = normal_scores[method].double()
        total += (values.double() - reference.mean()) / reference.std().clamp_min(1e-12)
    return total


def class_means(metrics: dict[str, float]) -> dict[str, float]:
    """`<name>/mean` over the classes of every `<name>/class_<c>` metric."""
    groups: defaultdict[str, list[float]] = defaultdict(list)
    for key, value in metrics.items():
        groups[key.rsplit("/", 1)[0]].append(value)
    return {f"{group}/mean": mean(values) for group, values in groups.items()}
