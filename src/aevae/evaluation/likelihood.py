"""Log-likelihood of a model with a likelihood (`Capability.likelihood`): the ELBO and the
importance-weighted estimate of log p(x), over a whole image set in batches."""

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
