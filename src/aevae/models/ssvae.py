"""The semi-supervised VAE M2 of Kingma, Rezende, Mohamed & Welling (2014), "Semi-Supervised
Learning with Deep Generative Models": the class is a second latent variable, observed for a few
training images and summed out for the rest."""

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import MISSING
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from aevae.data import InMemoryDataModule
from aevae.errors import TrainingError, require
from aevae.models.base import AEConfig, BaseAutoencoder, Capability
from aevae.models.classifier import N_CLASSES
from aevae.models.losses import corrupt, gaussian_kl, squared_error
from aevae.nets import NetConfig
from aevae.nets.mlp import MLPConfig


@dataclass
class SSVAEConfig(AEConfig):
    labels_per_class: int = MISSING  # labelled training images per class: the probe's subset for the run's seed
    alpha: float = MISSING  # weight of the labelled batch's mean cross-entropy -log q(y|x) (see SemiSupervisedVAE)
    balance: float = MISSING  # weight of the unlabelled batch's class balance, log 10 - H(mean q(y|x)); 0: Kingma et al.'s M2
    labelled_weight: float = MISSING  # weight of the labelled batch's mean -L(x, y) against the unlabelled batch's mean -U(x) (see SemiSupervisedVAE)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.labels_per_class > 0, "model.labels_per_class", f"must be > 0, got {self.labels_per_class}")
        require(self.alpha >= 0, "model.alpha", f"must be >= 0, got {self.alpha}")
        require(self.balance >= 0, "model.balance", f"must be >= 0, got {self.balance}")
        require(self.labelled_weight >= 0, "model.labelled_weight", f"must be >= 0, got {self.labelled_weight}")


class SemiSupervisedVAE(BaseAutoencoder):
    """M2: p(y) uniform over the 10 classes, p(z) = N(0, I), p(x | y, z) the decoder on [z, onehot(y)];
    q(y | x) a classifier, q(z | x, y) = N(mu, diag(exp(logvar))) from an MLP on [x, onehot(y)].

    Per image, in nats (Kingma et al. 2014, eqs. 6-9):
    - labelled: -L(x, y) = recon + KL(q(z|x,y) || p(z)) - log p(y);
    - unlabelled, y summed out: -U(x) = sum_y q(y|x) (-L(x, y)) - H(q(y|x))
      = E_q(y|x)[recon + KL_z] + KL(q(y|x) || p(y)), all 10 classes in one batched pass;
    - step objective: mean_unlabelled(-U) + labelled_weight * mean_labelled(-L) + alpha *
      mean_labelled(-log q(y|x)) + balance * (log 10 - H(mean_unlabelled q(y|x))), one labelled and
      one unlabelled batch per step (`InMemoryDataModule.serve_labels`).

    Kingma et al.'s objective is summed over the N training images (N_l labelled) and weighs the
    labelled batch's mean cross-entropy by alpha = 0.1 * N: against the unlabelled ELBO of one
    image that is 0.1, against the labelled ELBO of one image 0.1 * N / N_l (54 for 100 of 54,000
    images). With `labelled_weight` 1 each step weighs the labelled ELBO's mean as much as the
    unlabelled one's, so a labelled image, seen every step, weighs N_u / N_l times an unlabelled
    one in the generative model (539 for 100 of 54,000 images per epoch of batches of equal size):
    `alpha` = 0.1 * N / N_l keeps Kingma et al.'s ratio of cross-entropy to labelled ELBO, and
    `alpha` = 0.1 their ratio to the unlabelled ELBO. `labelled_weight` = N_l / N_u weighs each
    labelled image's ELBO as Kingma et al.'s sum does, as much as an unlabelled image's; the
    decoder then has no reason to redraw the labelled images more closely than the others.

    The balance term is not in Kingma et al.'s M2 (`balance` = 0 leaves it out): p(y) is uniform,
    so the classes q(y|x) gives many images should be about balanced, which -U does not ask for
    (a confident q(y|x) pays KL(q(y|x) || p(y)) = log 10 - H(q(y|x)) whichever class it picks). The
    term, >= 0 and 0 when the unlabelled batch's mean q(y|x) is uniform, is the marginal class
    entropy of CatGAN (Springenberg 2016) and IMSAT (Hu et al. 2017).

    Validation and test terms are the unlabelled ones, computed without labels (`val/loss` = -U
    chooses the checkpoint); `val/accuracy` of q(y|x) is logged beside them. The code of `embed`
    and `decode` is [z, y]: the posterior mean of z under the most probable class, and the class
    probabilities (a one-hot y gives p(x | y, z)'s mean).
    """

    config_class = SSVAEConfig
    terms = ("loss", "recon", "kl", "elbo", "mse")
    capabilities = frozenset(Capability)

    def __init__(self, model: SSVAEConfig, net: NetConfig, image_shape: Any) -> None:
        require(isinstance(net, MLPConfig), "net", f"ssvae is built on MLP nets (net=mlp), got {net.name!r}")
        super().__init__(model, net, image_shape)
        self.classifier = net.encoder(self.image_shape, N_CLASSES)
        # The encoder MLP's first layer sees [x, onehot(y)]: its x part runs once per image and
        # its y part is a per-class bias, so summing over the classes repeats only the layers above.
        self.label_bias = nn.Embedding(N_CLASSES, net.hidden_dims[0])
        self.accuracy = nn.ModuleDict({stage: MulticlassAccuracy(N_CLASSES, average="micro") for stage in ("val", "test")})

    @property
    def encoder_out_features(self) -> int:
        return 2 * self.cfg.latent_dim

    @property
    def code_features(self) -> int:
        return self.cfg.latent_dim + N_CLASSES

    # --- inference and generation -------------------------------------------------------
    def _posterior(self, x_features: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z | x, y) from the first layer's x part and labels y."""
        mu, logvar = self.encoder.net[1][1:](x_features + self.label_bias(y)).chunk(2, dim=-1)
        return mu, logvar

    def _x_features(self, x: Tensor) -> Tensor:
        return self.encoder.net[1][0](x.flatten(1))

    def encode_given(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z | x, y) for images `x` and labels `y` (B,)."""
        return self._posterior(self._x_features(x), y)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """q(z | x, y) under the most probable class y of q(y | x)."""
        return self.encode_given(x, self.classify(x).argmax(1))

    def embed(self, x: Tensor) -> Tensor:
        """[posterior mean of z under the most probable class, q(y | x)]: (B, latent_dim + 10)."""
        probs = self.classify(x)
        return torch.cat([self.encode_given(x, probs.argmax(1))[0], probs], dim=1)

    def decode_given(self, z: Tensor, y: Tensor) -> Tensor:
        """Mean images of p(x | y, z) for codes `z` (N, latent_dim) and labels `y` (N,)."""
        return self.decode(torch.cat([z, F.one_hot(y, N_CLASSES).to(z.dtype)], dim=1))

    def sample(self, n: int) -> Tensor:
        return self.sample_given(torch.randint(N_CLASSES, (n,), device=self.device))

    def sample_given(self, y: Tensor) -> Tensor:
        return self.decode_given(torch.randn(len(y), self.cfg.latent_dim, device=self.device), y)

    def classify(self, x: Tensor) -> Tensor:
        return self.classifier(x).softmax(1)

    # --- the ELBOs ----------------------------------------------------------------------
    def _every_class(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q(z | x, y) for every class y: means and log-variances (10 B, D) and the labels (10 B,),
        class-major (row c B + b: class c, image b)."""
        y = torch.arange(N_CLASSES, device=x.device).repeat_interleave(len(x))
        mu, logvar = self._posterior(self._x_features(x).repeat(N_CLASSES, 1), y)
        return mu, logvar, y

    def _log_px(self, z: Tensor, y: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """log p(target | y, z) per row and the decoder's logits, for codes (N, D), labels (N,)
        and images (N, ...)."""
        logits = self.decoder(torch.cat([z, F.one_hot(y, N_CLASSES).to(z.dtype)], dim=1))
        return -self.likelihood.nll(logits, target), logits

    def _unlabelled_terms(self, x_in: Tensor, target: Tensor, *, sample: bool, log_q: Tensor | None = None) -> dict[str, Tensor]:
        """-U(x) and its parts per image; z drawn from q(z | x, y) (`sample`) or at its mean;
        `log_q`: log q(y | x_in) when already computed."""
        n = len(x_in)
        log_q = self.classifier(x_in).log_softmax(1) if log_q is None else log_q
        q = log_q.exp()
        mu, logvar, y = self._every_class(x_in)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        log_px, logits = self._log_px(z, y, target.repeat(N_CLASSES, *[1] * (target.dim() - 1)))
        recon = (q.T * -log_px.view(N_CLASSES, n)).sum(0)
        kl = (q.T * gaussian_kl(mu, logvar).view(N_CLASSES, n)).sum(0) + (q * log_q).sum(1) + math.log(N_CLASSES)
        mean_image = torch.einsum("bc,cb...->b...", q, self.likelihood.mean(logits).view(N_CLASSES, *target.shape))
        return {"loss": recon + kl, "recon": recon, "kl": kl, "elbo": -(recon + kl), "mse": squared_error(mean_image, target)}

    def loss_terms(self, x_in: Tensor, target: Tensor) -> dict[str, Tensor]:
        """The unlabelled terms: -U(x) ('loss'), its expected reconstruction and KL (of z and y)."""
        return self._unlabelled_terms(x_in, target, sample=True)

    def labelled_terms(self, x_in: Tensor, target: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Per labelled image: 'nll' = -L(x, y) and 'ce' = -log q(y | x)."""
        mu, logvar = self.encode_given(x_in, y)
        log_px, _ = self._log_px(mu + torch.randn_like(mu) * (0.5 * logvar).exp(), y, target)
        nll = -log_px + gaussian_kl(mu, logvar) + math.log(N_CLASSES)
        return {"nll": nll, "ce": F.cross_entropy(self.classifier(x_in), y, reduction="none")}

    @staticmethod
    def class_balance(q: Tensor) -> Tensor:
        """log 10 - H(mean q): how far the mean of class probabilities `q` (B, 10) is from the
        uniform p(y), in nats (>= 0)."""
        mean = q.mean(0)
        return math.log(N_CLASSES) + (mean * mean.clamp_min(torch.finfo(mean.dtype).tiny).log()).sum()

    def training_terms(self, batch: Any) -> dict[str, Tensor]:
        """The unlabelled batch's terms; its 'loss' per image is -U(x) plus the labelled batch's
        share (labelled_weight * mean -L + alpha * mean cross-entropy) and the unlabelled batch's
        balance term, so that its mean is the step objective."""
        (x_l, y_l), (x_u, _) = batch["labelled"], batch["unlabelled"]
        noisy = lambda x: corrupt(x, self.cfg.corruption, self.cfg.corruption_level)  # noqa: E731
        x_in = noisy(x_u)
        log_q = self.classifier(x_in).log_softmax(1)
        terms = self._unlabelled_terms(x_in, x_u, sample=True, log_q=log_q)
        labelled = self.labelled_terms(noisy(x_l), x_l, y_l)
        ce, balance = labelled["ce"].mean(), self.class_balance(log_q.exp())
        self.log("train/ce", ce.detach(), on_step=False, on_epoch=True, sync_dist=True, batch_size=len(y_l))
        self.log("train/balance", balance.detach(), on_step=False, on_epoch=True, sync_dist=True, batch_size=len(x_u))
        weighted = self.cfg.labelled_weight * labelled["nll"].mean() + self.cfg.alpha * ce + self.cfg.balance * balance
        return terms | {"loss": terms["loss"] + weighted}

    @torch.no_grad()
    def log_likelihood_bounds(self, x: Tensor, k: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """With y summed out: 'log_px' = log sum_y p(y) p^(x | y), p^ the k-sample importance
        estimate under q(z | x, y) (all 10 k B codes in one decoder pass); 'elbo' = U(x) with the
        inner expectation over z estimated by the same k samples."""
        n = len(x)
        log_q = self.classifier(x).log_softmax(1)
        mu, logvar, y = self._every_class(x)
        std = (0.5 * logvar).exp()
        z = mu + std * torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        targets = x.repeat(N_CLASSES, *[1] * (x.dim() - 1)).expand(k, N_CLASSES * n, *x.shape[1:]).flatten(0, 1)
        log_px_z, _ = self._log_px(z.flatten(0, 1), y.repeat(k), targets)
        normal = torch.distributions.Normal
        log_w = log_px_z.view(k, N_CLASSES * n) + normal(0.0, 1.0).log_prob(z).sum(-1) - normal(mu, std).log_prob(z).sum(-1)
        log_w = log_w.view(k, N_CLASSES, n) - math.log(N_CLASSES)  # log p(x, y, z) - log q(z | x, y)
        log_px = torch.logsumexp(log_w.flatten(0, 1), 0) - math.log(k)
        elbo = (log_q.exp() * (log_w.mean(0).T - log_q)).sum(1)
        return {"elbo": elbo, "log_px": log_px}

    def score_anomaly(self, x: Tensor) -> Tensor:
        """-U(x) with every class's posterior mean as its code (deterministic)."""
        return self._unlabelled_terms(x, x, sample=False)["loss"]

    # --- Lightning hooks ----------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Before fitting, ask the data module for labelled batches beside the unlabelled ones."""
        if stage != "fit":
            return
        datamodule = self.trainer.datamodule
        if not isinstance(datamodule, InMemoryDataModule):
            raise TrainingError("ssvae trains from the in-memory data module (labelled and unlabelled batches)")
        datamodule.serve_labels(self.cfg.labels_per_class)

    def _update_accuracy(self, stage: str, batch: Any) -> None:
        x, y = batch
        self.accuracy[stage].update(self.classify(x).argmax(1), y)
        self.log(f"{stage}/accuracy", self.accuracy[stage], on_step=False, on_epoch=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        self._update_accuracy("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        self._update_accuracy("test", batch)
