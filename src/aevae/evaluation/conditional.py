"""A class-conditional model (`Capability.sample_given`, `Capability.classify`): how well its
q(y|x) classifies, whether its samples show the digit asked for (judged by the digit classifier),
their Fréchet distance per class, the supervised-only baseline on the same labels, and its figures:
a grid of samples with one column per class, and analogies (a test image's style, every digit)."""

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aevae.evaluation.batches import map_batches
from aevae.evaluation.sample_quality import frechet_distance
from aevae.models import BaseAutoencoder
from aevae.models.classifier import N_CLASSES, DigitClassifier
from aevae.reporting.plots import save_image_rows


def accuracy(predict: Callable[[Tensor], Tensor], images: Tensor, labels: Tensor, batch_size: int) -> float:
    """The fraction of `images` whose class by `predict` (images -> class indices) is their label."""
    return float((map_batches(predict, images, batch_size) == labels).float().mean())


@torch.no_grad()
def conditional_samples(model: BaseAutoencoder, per_class: int, batch_size: int) -> tuple[Tensor, Tensor]:
    """`per_class` images generated for each class (`sample_given`, z from the prior) and the
    classes asked for, class by class."""
    asked = torch.arange(N_CLASSES, device=model.device).repeat_interleave(per_class)
    return map_batches(model.sample_given, asked, batch_size), asked


def per_class_accuracy(judge: DigitClassifier, samples: Tensor, asked: Tensor, batch_size: int) -> Tensor:
    """(classes,): the fraction of each class's samples that `judge` labels as the class asked for."""
    hits = (map_batches(judge.predict, samples, batch_size) == asked).float()
    return torch.zeros(N_CLASSES, device=hits.device).index_add_(0, asked, hits) / torch.bincount(asked, minlength=N_CLASSES)


def per_class_fid(judge: DigitClassifier, real: Tensor, real_labels: Tensor, samples: Tensor, asked: Tensor, batch_size: int) -> Tensor:
    """(classes,): the Fréchet distance, in the judge's features, between the real images of each
    class and the samples asked for that class."""
    return torch.tensor([frechet_distance(judge, real[real_labels == c], samples[asked == c], batch_size) for c in range(N_CLASSES)])


def conditional_metrics(samples: Tensor, asked: Tensor, judge: DigitClassifier, real: Tensor, real_labels: Tensor, batch_size: int) -> dict[str, float]:
    """Of `samples` generated for the classes `asked` (`conditional_samples`): `gen/accuracy`
    (the judge sees the digit asked for; mean over digits), `gen/fid` (mean over digits) and both
    per digit (`gen/accuracy/digit_<d>`, `gen/fid/digit_<d>`)."""
    scores = {"accuracy": per_class_accuracy(judge, samples, asked, batch_size), "fid": per_class_fid(judge, real, real_labels, samples, asked, batch_size)}
    metrics = {}
    for name, values in scores.items():
        metrics[f"gen/{name}"] = float(values.mean())
        metrics |= {f"gen/{name}/digit_{d}": float(value) for d, value in enumerate(values)}
    return metrics


def fit_supervised(net: nn.Module, images: Tensor, labels: Tensor, steps: int, lr: float) -> nn.Module:
    """`net` (images -> class logits) trained by full-batch Adam on the cross-entropy of the
    labelled images alone: the supervised-only baseline of a semi-supervised model."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()
    return net.eval()


# --- figures -----------------------------------------------------------------------------------
@torch.no_grad()
def conditional_grid(model: BaseAutoencoder, rows: int) -> list[Tensor]:
    """`rows` rows of 10 images: one z from the prior per row, decoded as every digit 0-9 (one
    column per class)."""
    asked = torch.arange(N_CLASSES, device=model.device).repeat(rows)
    z = torch.randn(rows, model.cfg.latent_dim, device=model.device).repeat_interleave(N_CLASSES, 0)
    return list(model.decode_given(z, asked).split(N_CLASSES))


@torch.no_grad()
def analogy_grid(model: BaseAutoencoder, images: Tensor) -> list[Tensor]:
    """One row per test image: the image, then its style z (the posterior mean of `encode`, under
    the most probable class) decoded as every digit 0-9 (Kingma et al. 2014, figure 1)."""
    z = model.encode(images)[0].repeat_interleave(N_CLASSES, 0)
    digits = model.decode_given(z, torch.arange(N_CLASSES, device=model.device).repeat(len(images)))
    return [torch.cat([image[None], row]) for image, row in zip(images, digits.split(N_CLASSES))]


def save_conditional_figures(model: BaseAutoencoder, images: Tensor, rows: int, directory: str | Path, name: str, seed: int) -> list[Path]:
    """`<name>_conditional_samples.png` and `<name>_analogies.png` (the first `rows` of `images`)."""
    directory = Path(directory)
    torch.manual_seed(seed)
    samples = conditional_grid(model, rows)
    analogies = analogy_grid(model, images[:rows])
    return [
        save_image_rows(samples, [f"z {r}" for r in range(rows)], directory / f"{name}_conditional_samples.png", title=f"{name}: one prior z per row; columns: digits 0-9"),
        save_image_rows(analogies, [f"test {r}" for r in range(rows)], directory / f"{name}_analogies.png", title=f"{name}: a test image, then its style as digits 0-9"),
    ]
