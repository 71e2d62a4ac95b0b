"""Log-likelihood of a VAE: the ELBO and the importance-weighted (IWAE) estimate of log p(x)."""

import math

import torch
from torch import Tensor
from torch.distributions import Normal

from aevae.models import VariationalAutoencoder
from aevae.models.losses import reconstruction_nll


def importance_log_weights(model: VariationalAutoencoder, x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """log p(x, z) - log q(z | x) for `k` posterior samples z per image, in nats: shape (k, B).

    All k x B samples go through the decoder in one batch.
    """
    mu, logvar = model.encode(x)
    std = (0.5 * logvar).exp()
    z = mu + std * torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    logits = model.decoder(z.flatten(0, 1))
    targets = x.expand(k, *x.shape).flatten(0, 1)
    log_px_z = -reconstruction_nll(logits, targets, model.cfg.likelihood, model.cfg.gaussian_std).view(k, len(x))
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = Normal(mu, std).log_prob(z).sum(-1)
    return log_px_z + log_pz - log_qz


@torch.no_grad()
def likelihood_bounds(
    model: VariationalAutoencoder, images: Tensor, k: int, batch_size: int, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Per-image lower bounds on log p(x) in nats, from `k` importance samples per image.

    'elbo': the mean of the k log-weights (a k-sample estimate of the ELBO);
    'log_px': the IWAE bound logsumexp(log w) - log k, which tightens towards log p(x) as k grows.
    """
    elbo, log_px = [], []
    for x in images.split(batch_size):
        log_w = importance_log_weights(model, x, k, generator)
        elbo.append(log_w.mean(0))
        log_px.append(torch.logsumexp(log_w, 0) - math.log(k))
    return {"elbo": torch.cat(elbo), "log_px": torch.cat(log_px)}
