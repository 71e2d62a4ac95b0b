"""Per-sample loss terms in nats (summed over pixels or features), the decoder's likelihoods, and
input corruption."""

import math
from collections.abc import Sequence
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aevae.errors import ConfigError

LEVELS = 255  # the discretised logistic's bins: 256 values k / 255 of 8-bit pixels in [0, 1]
MIN_LOG_SCALE = -7.0  # the logistic's smallest log-scale (PixelCNN++), far below a bin's width


class Likelihood(StrEnum):
    """The decoder's distribution of a pixel (or feature) given the code."""

    auto = "auto"  # chosen by the data's kind (`default_likelihood`)
    bernoulli = "bernoulli"  # probability sigmoid(output): [0, 1] grey images (binary cross-entropy)
    gaussian = "gaussian"  # mean sigmoid(output) (images) or output (vectors), std `model.gaussian_std`
    gaussian_learned = "gaussian_learned"  # the same mean, a learned std per channel (images) or per feature (vectors)
    logistic = "logistic"  # discretised logistic, a location and log-scale per pixel (scale `model.gaussian_std` at output 0), bins of 1/255


class DataKind(StrEnum):
    """What a model's inputs are, read from their shape."""

    grey = "grey"  # (1, H, W) in [0, 1]
    colour = "colour"  # (C > 1, H, W) in [0, 1]
    vectors = "vectors"  # (D,) standardised features


DEFAULT_LIKELIHOOD = {DataKind.grey: Likelihood.bernoulli, DataKind.colour: Likelihood.logistic, DataKind.vectors: Likelihood.gaussian_learned}
IMAGE_ONLY = (Likelihood.bernoulli, Likelihood.logistic)  # need values in [0, 1]; vectors are standardised


class Corruption(StrEnum):
    """Input corruption of a denoising model."""

    none = "none"
    gaussian = "gaussian"
    mask = "mask"


def data_kind(image_shape: Sequence[int]) -> DataKind:
    """Vectors (D,), or grey (1 channel) or colour images (C, H, W)."""
    if len(image_shape) == 1:
        return DataKind.vectors
    return DataKind.grey if image_shape[0] == 1 else DataKind.colour


def resolve_likelihood(likelihood: str, image_shape: Sequence[int]) -> Likelihood:
    """`likelihood`, or the data kind's default for 'auto'; ConfigError for one the data cannot have."""
    kind = data_kind(image_shape)
    chosen = DEFAULT_LIKELIHOOD[kind] if likelihood == Likelihood.auto else Likelihood(likelihood)
    if kind == DataKind.vectors and chosen in IMAGE_ONLY:
        raise ConfigError(f"model.likelihood: {chosen} needs images in [0, 1]; the data are standardised vectors: use gaussian_learned or gaussian")
    return chosen


class PixelLikelihood(nn.Module):
    """p(x | decoder output): `nll` per sample in nats, `mean` the expected image (or vector).

    `params` is the number of decoder outputs per pixel: the decoder writes `params * C` channels.
    """

    params = 1

    def nll(self, output: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def mean(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output)


class Bernoulli(PixelLikelihood):
    def nll(self, output: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(output, target, reduction="none").flatten(1).sum(1)


class Gaussian(PixelLikelihood):
    """N(mean, std^2) per pixel: `std` fixed, or learned per channel (images) or feature (vectors)
    when `learned` (initialised at `std`). A density: its nats are not a discrete likelihood's."""

    def __init__(self, image_shape: Sequence[int], std: float, learned: bool) -> None:
        super().__init__()
        self.vectors = data_kind(image_shape) == DataKind.vectors
        log_std = torch.full((image_shape[0], *[1] * (len(image_shape) - 1)), math.log(std))
        if learned:
            self.log_std = nn.Parameter(log_std)
        else:
            self.register_buffer("log_std", log_std, persistent=False)

    def mean(self, output: Tensor) -> Tensor:
        return output if self.vectors else torch.sigmoid(output)

    def nll(self, output: Tensor, target: Tensor) -> Tensor:
        z = (target - self.mean(output)) * torch.exp(-self.log_std)
        per_pixel = 0.5 * z.square() + self.log_std + 0.5 * math.log(2 * math.pi)
        return per_pixel.flatten(1).sum(1)


class DiscretisedLogistic(PixelLikelihood):
    """A logistic per pixel, its mass on the 256 bins of width 1/255 around k / 255 (the edge bins
    take the tails), as in PixelCNN++ (Salimans et al. 2017) and IAF (Kingma et al. 2016) with one
    component: location sigmoid(output[:, :C]), log-scale output[:, C:] + log(`scale`), so that
    an untrained decoder starts near `scale` rather than at a scale of 1 (the whole range)."""

    params = 2

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.log_scale_offset = math.log(scale)

    def mean(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output.chunk(2, dim=1)[0])  # the median: the mean up to the edge bins' clipping

    def nll(self, output: Tensor, target: Tensor) -> Tensor:
        location, log_scale = output.chunk(2, dim=1)
        location = torch.sigmoid(location)
        log_scale = (log_scale + self.log_scale_offset).clamp_min(MIN_LOG_SCALE)
        half = 0.5 / LEVELS
        inv_scale = torch.exp(-log_scale)
        centred = target - location
        upper, lower, middle = inv_scale * (centred + half), inv_scale * (centred - half), inv_scale * centred
        log_cdf_upper = upper - F.softplus(upper)  # log sigmoid: the mass below the bin's top
        log_sf_lower = -F.softplus(lower)  # the mass above the bin's bottom
        mass = torch.sigmoid(upper) - torch.sigmoid(lower)
        log_density = middle - log_scale - 2.0 * F.softplus(middle) + math.log(2 * half)  # a narrow bin: density x width
        inner = torch.where(mass > 1e-5, mass.clamp_min(1e-12).log(), log_density)
        log_p = torch.where(target < half, log_cdf_upper, torch.where(target > 1 - half, log_sf_lower, inner))
        return -log_p.flatten(1).sum(1)


def build_likelihood(likelihood: str, image_shape: Sequence[int], gaussian_std: float) -> PixelLikelihood:
    """The likelihood module of a (resolved) `likelihood` for data of `image_shape`."""
    chosen = resolve_likelihood(likelihood, image_shape)
    if chosen == Likelihood.bernoulli:
        return Bernoulli()
    if chosen == Likelihood.logistic:
        return DiscretisedLogistic(gaussian_std)
    return Gaussian(image_shape, gaussian_std, learned=chosen == Likelihood.gaussian_learned)


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
