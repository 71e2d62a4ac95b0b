"""Per-sample loss terms in nats (summed over pixels), and input corruption."""

import math
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import Tensor


class Likelihood(StrEnum):
    """The decoder's pixel distribution."""

    bernoulli = "bernoulli"
    gaussian = "gaussian"


class Corruption(StrEnum):
    """Input corruption of a denoising model."""

    none = "none"
    gaussian = "gaussian"
    mask = "mask"


def reconstruction_nll(logits: Tensor, target: Tensor, likelihood: str, gaussian_std: float = 0.1) -> Tensor:
    """-log p(target | decoder logits) per sample, summed over pixels.

    'bernoulli': pixel probabilities sigmoid(logits) (binary cross-entropy).
    'gaussian': pixel means sigmoid(logits) with a fixed standard deviation `gaussian_std`.
    """
    if likelihood == "bernoulli":
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    elif likelihood == "gaussian":
        z = (target - torch.sigmoid(logits)) / gaussian_std
        per_pixel = 0.5 * z.square() + math.log(gaussian_std) + 0.5 * math.log(2 * math.pi)
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}")
    return per_pixel.flatten(1).sum(1)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, in closed form."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1)


def squared_error(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per sample (mean over pixels)."""
    return (prediction - target).square().flatten(1).mean(1)


def corrupt(x: Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> Tensor:
    """Corrupt inputs: additive gaussian noise of std `level` (clipped to [0, 1]) or a random
    fraction `level` of pixels set to 0. `generator` makes the corruption reproducible."""
    if kind == "none" or level == 0:
        return x
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + level * noise).clamp(0.0, 1.0)
    if kind == "mask":
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= level
        return x * keep.to(x.dtype)
    raise ValueError(f"unknown corruption {kind!r}")
