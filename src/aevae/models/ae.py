"""Deterministic autoencoder (and, with input corruption, the denoising autoencoder)."""

from torch import Tensor

from aevae.models.base import BaseAutoencoder
from aevae.models.losses import squared_error


class Autoencoder(BaseAutoencoder):
    """z = encoder(x); loss = -log p(x | decoder(z)) under the configured likelihood (bernoulli: BCE)."""

    def loss_terms(self, x_in: Tensor, target: Tensor) -> dict[str, Tensor]:
        logits = self.decoder(self.encoder(x_in))
        recon = self.likelihood.nll(logits, target)
        return {"loss": recon, "recon": recon, "mse": squared_error(self.likelihood.mean(logits), target)}

    def score_anomaly(self, x: Tensor) -> Tensor:
        """Reconstruction error: the per-sample negative log-likelihood the model is trained on."""
        return self.loss_terms(x, x)["recon"]
