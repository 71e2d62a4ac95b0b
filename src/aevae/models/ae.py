"""Deterministic autoencoder (and, with input corruption, the denoising autoencoder)."""

from torch import Tensor

from aevae.models.base import BaseAutoencoder
from aevae.models.losses import reconstruction_nll, squared_error


class Autoencoder(BaseAutoencoder):
    """z = encoder(x); loss = -log p(x | decoder(z)): BCE (bernoulli) or scaled MSE (gaussian)."""

    def loss_terms(self, x_in: Tensor, target: Tensor) -> dict[str, Tensor]:
        logits = self.decoder(self.encoder(x_in))
        recon = reconstruction_nll(logits, target, self.cfg.likelihood, self.cfg.gaussian_std)
        return {"loss": recon, "recon": recon, "mse": squared_error(logits.sigmoid(), target)}

    def score_anomaly(self, x: Tensor) -> Tensor:
        """Reconstruction error: the per-sample negative log-likelihood the model is trained on."""
        return self.loss_terms(x, x)["recon"]
