"""Log-likelihood of a model with a likelihood (`Capability.likelihood`): the ELBO and the
importance-weighted estimate of log p(x), over a whole image set in batches, and what the number
means under each likelihood."""

import math

import torch
from torch import Tensor

from aevae.models import BaseAutoencoder


@torch.no_grad()
def likelihood_bounds(
    model: BaseAutoencoder, images: Tensor, k: int, batch_size: int, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Per-image lower bounds on log p(x) in nats, from `k` importance samples per image (the
    model's `log_likelihood_bounds`, `batch_size` images at a time).

    'elbo': a k-sample estimate of the ELBO;
    'log_px': the importance-weighted bound, which tightens towards log p(x) as k grows.
    """
    bounds = [model.log_likelihood_bounds(x, k, generator) for x in images.split(batch_size)]
    return {name: torch.cat([batch[name] for batch in bounds]) for name in ("elbo", "log_px")}


MEANING = {  # what -log p(x) in nats per image is under each (resolved) likelihood
    "bernoulli": "nats per image: a probability of binary pixels (a surrogate on grey levels)",
    "gaussian": "nats per image: a density over continuous values (not comparable with a discrete likelihood)",
    "gaussian_learned": "nats per image: a density over continuous values (not comparable with a discrete likelihood)",
    "logistic": "nats per image: a probability of 8-bit pixels (bins of 1/255); also in bits per dimension",
}
DISCRETE_8BIT = ("logistic",)  # the likelihoods whose -log p(x) is also given in bits per dimension


def bits_per_dim(nll_nats: float, dims: int) -> float:
    """-log2 p(x) per pixel and channel, from -log p(x) in nats per image of `dims` values."""
    return nll_nats / (dims * math.log(2))
