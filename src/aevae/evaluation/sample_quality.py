"""How real generated images look, judged by a digit classifier trained on the data set: the
Fréchet distance between real and generated images in its feature space (FID with a custom
feature extractor, torchmetrics), and how the samples spread over the classes."""

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from aevae.evaluation.batches import map_batches

COVERAGE_SHARE = 0.5  # a class is covered when it gets at least half of its uniform share of samples


@torch.no_grad()
def frechet_distance(features: nn.Module, real: Tensor, generated: Tensor, batch_size: int) -> float:
    """Fréchet distance between the feature distributions of `real` and `generated` images (both
    (N, C, H, W) in [0, 1]) under `features`, a module with a `num_features` attribute."""
    fid = FrechetInceptionDistance(feature=features, normalize=True, input_img_size=tuple(real.shape[1:])).to(real.device)
    for images, is_real in ((real, True), (generated, False)):
        for batch in images.split(batch_size):
            fid.update(batch, real=is_real)
    return float(fid.compute())


def class_histogram(predict: nn.Module, images: Tensor, batch_size: int, n_classes: int) -> Tensor:
    """The number of images predicted as each class, (n_classes,)."""
    return torch.bincount(map_batches(predict, images, batch_size), minlength=n_classes)


def coverage(histogram: Tensor) -> dict[str, float]:
    """`classes_covered`: classes with at least half of their uniform share of the images;
    `class_entropy`: the entropy of the class frequencies in nats (ln 10 = 2.303 when uniform)."""
    frequencies = histogram.double() / histogram.sum()
    covered = int((frequencies >= COVERAGE_SHARE / len(histogram)).sum())
    entropy = -float((frequencies * frequencies.clamp_min(1e-300).log()).sum()) + 0.0  # no -0.0
    return {"classes_covered": float(covered), "class_entropy": entropy}
