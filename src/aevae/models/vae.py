"""Variational autoencoder with a diagonal-Gaussian posterior (and beta-VAE through `beta`)."""

import math
from dataclasses import dataclass

import torch
from omegaconf import MISSING
from torch import Tensor
from torch.distributions import Normal

from aevae.errors import require
from aevae.models.base import AEConfig, BaseAutoencoder, Capability
from aevae.models.losses import gaussian_kl, squared_error


@dataclass
class VAEConfig(AEConfig):
    beta: float = MISSING  # weight of the KL term (beta-VAE for beta > 1)
    kl_warmup_epochs: int = MISSING  # the KL weight rises linearly from 0 to beta over these epochs

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.beta >= 0, "model.beta", f"must be >= 0, got {self.beta}")
        require(self.kl_warmup_epochs >= 0, "model.kl_warmup_epochs", f"must be >= 0, got {self.kl_warmup_epochs}")


class VariationalAutoencoder(BaseAutoencoder):
    """q(z|x) = N(mu, diag(exp(logvar))), p(z) = N(0, I), p(x|z) the configured likelihood.

    loss = recon + beta_t * kl, with beta_t rising linearly from 0 to `beta` over
    `kl_warmup_epochs`; `elbo` = -(recon + kl) is always reported with weight 1, in nats.
    """

    config_class = VAEConfig
    terms = ("loss", "recon", "kl", "elbo", "mse")
    capabilities = frozenset({Capability.sample, Capability.likelihood, Capability.posterior})

    @property
    def encoder_out_features(self) -> int:
        return 2 * self.cfg.latent_dim

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def embed(self, x: Tensor) -> Tensor:
        """The posterior mean."""
        return self.encode(x)[0]

    def sample(self, n: int) -> Tensor:
        z = torch.randn(n, self.cfg.latent_dim, device=self.device)
        return self.decode(z)

    def importance_log_weights(self, x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        """log p(x, z) - log q(z | x) for `k` posterior samples z per image, in nats: shape (k, B).

        All k x B samples go through the decoder in one batch.
        """
        mu, logvar = self.encode(x)
        std = (0.5 * logvar).exp()
        z = mu + std * torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        logits = self.decoder(z.flatten(0, 1))
        targets = x.expand(k, *x.shape).flatten(0, 1)
        log_px_z = -self.likelihood.nll(logits, targets).view(k, len(x))
        log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = Normal(mu, std).log_prob(z).sum(-1)
        return log_px_z + log_pz - log_qz

    def log_likelihood_bounds(self, x: Tensor, k: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """'elbo': the mean of the k log-weights; 'log_px': the IWAE bound logsumexp(log w) - log k,
        which tightens towards log p(x) as k grows (Burda et al. 2015)."""
        log_w = self.importance_log_weights(x, k, generator)
        return {"elbo": log_w.mean(0), "log_px": torch.logsumexp(log_w, 0) - math.log(k)}

    def kl_weight(self) -> float:
        """beta, scaled by the warm-up factor while training."""
        if not self.training or self.cfg.kl_warmup_epochs == 0:
            return self.cfg.beta
        try:
            steps_per_epoch = self.trainer.num_training_batches
        except RuntimeError:  # not attached to a Trainer
            return self.cfg.beta
        progress = (self.global_step + 1) / max(1, steps_per_epoch)  # epochs, this step included
        return self.cfg.beta * min(1.0, progress / self.cfg.kl_warmup_epochs)

    def loss_terms(self, x_in: Tensor, target: Tensor) -> dict[str, Tensor]:
        mu, logvar = self.encode(x_in)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits = self.decoder(z)
        recon = self.likelihood.nll(logits, target)
        kl = gaussian_kl(mu, logvar)
        return {
            "loss": recon + self.kl_weight() * kl,
            "recon": recon,
            "kl": kl,
            "elbo": -(recon + kl),
            "mse": squared_error(self.likelihood.mean(logits), target),
        }

    def score_anomaly(self, x: Tensor) -> Tensor:
        """Negative ELBO with the posterior mean as the decoded code (deterministic)."""
        mu, logvar = self.encode(x)
        recon = self.likelihood.nll(self.decoder(mu), x)
        return recon + gaussian_kl(mu, logvar)
