"""How a VAE uses its latent dimensions: KL per dimension, active units, the busiest dimensions.

The functions take the posterior parameters of a set of images (typically the test split):
`mu` and `logvar` of shape (N, D), as returned by `VariationalAutoencoder.encode` (`posterior`
computes them in batches).
"""

from typing import Any

import torch
from torch import Tensor

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2015), "Importance Weighted Autoencoders", section 5.2


@torch.no_grad()
def posterior(model: Any, images: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """Posterior means and log-variances of `images` under `model.encode`, (N, D) each."""
    mu, logvar = zip(*(model.encode(batch) for batch in images.split(batch_size)))
    return torch.cat(mu), torch.cat(logvar)


def kl_per_dimension(mu: Tensor, logvar: Tensor) -> Tensor:
    """Mean over images of KL(q(z_i | x) || N(0, 1)) for each latent dimension i, in nats: (D,).

    The closed form of each dimension's term; summed over dimensions it is the mean total KL of
    `aevae.models.losses.gaussian_kl`. A dimension with a KL near 0 is unused (posterior collapse).
    """
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).mean(0)


def posterior_mean_variance(mu: Tensor) -> Tensor:
    """Cov_x(E_q[z_i | x]) for each dimension i: the unbiased sample variance over images of the
    posterior means, in float64, (D,); zeros for fewer than two images."""
    if len(mu) < 2:
        return torch.zeros(mu.shape[1], dtype=torch.float64, device=mu.device)
    return mu.double().var(0, correction=1)


def active_units(mu: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """The number of active latent units (Burda et al., 2015): unit i is active when
    Cov_x(E_q[z_i | x]) > `threshold`, i.e. its posterior mean varies with the input.

    `mu` (N, D): the posterior means of the images (the test set) the count is taken over.
    """
    return int((posterior_mean_variance(mu) > threshold).sum())


def most_active_dimensions(mu: Tensor, k: int) -> Tensor:
    """Indices of the (at most) `k` dimensions whose posterior means vary most over the images,
    most active first; ties keep the lower index first. Shape (min(k, D),), int64."""
    variance = posterior_mean_variance(mu)
    order = torch.sort(variance, descending=True, stable=True).indices
    return order[: max(0, min(k, len(order)))]
