"""The LightningModule base shared by all autoencoders: the common API and the training loop."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import MISSING, OmegaConf
from torch import Tensor, nn
from torchmetrics import MeanMetric

from aevae.errors import ConfigError, TrainingError, require
from aevae.io import plain
from aevae.models.losses import Corruption, Likelihood, build_likelihood, corrupt, resolve_likelihood
from aevae.models.schedules import LRSchedule
from aevae.nets import NetConfig

Config = TypeVar("Config")


class Capability(StrEnum):
    """What a model can do beyond encoding and decoding; `supports` says whether it does."""

    sample = "sample"  # `sample(n)`: images from the prior
    sample_given = "sample_given"  # `sample_given(y)`, `decode_given(z, y)`: images of the asked classes
    classify = "classify"  # `classify(x)`: class probabilities q(y|x)
    likelihood = "likelihood"  # `log_likelihood_bounds(x, k)`: the ELBO and the IS bound on log p(x)
    posterior = "posterior"  # `encode(x)`: the mean and log-variance of a diagonal-gaussian q(z|x)


@dataclass
class AEConfig:
    """The `model` config of every autoencoder; subclasses add their own keys."""

    name: str = MISSING  # the kind: the module `aevae.models.<name>` (aevae.models.model_class)
    label: str = MISSING  # the variant's name in run names, tables and reports (ae, dae, vae, beta_vae)
    latent_dim: int = MISSING
    likelihood: Likelihood = MISSING  # auto: by the data (grey: bernoulli, colour: logistic, vectors: gaussian_learned)
    gaussian_std: float = MISSING  # the likelihood's scale: gaussian's std (gaussian_learned: its initial value; logistic: at output 0)
    corruption: Corruption = MISSING  # input corruption of a denoising model
    corruption_level: float = MISSING  # noise std (gaussian) or drop probability (mask)
    lr: float = MISSING
    lr_schedule: LRSchedule = MISSING  # a function of `aevae.models.schedules`, which `scheduler` runs
    optimizer: Any = MISSING  # a `_partial_` Hydra node (`_target_`: the class) at `lr`; given the model's parameters
    scheduler: Any = MISSING  # a `_partial_` Hydra node of the learning-rate scheduler; given the optimizer and max_epochs, stepped per epoch

    def __post_init__(self) -> None:
        require(self.latent_dim > 0, "model.latent_dim", f"must be > 0, got {self.latent_dim}")
        require(self.gaussian_std > 0, "model.gaussian_std", f"must be > 0, got {self.gaussian_std}")
        require(self.corruption_level >= 0, "model.corruption_level", f"must be >= 0, got {self.corruption_level}")
        if self.corruption == Corruption.mask:
            require(self.corruption_level < 1, "model.corruption_level", "a drop probability must be < 1")
        require(self.lr > 0, "model.lr", f"must be > 0, got {self.lr}")
        require(self.optimizer.get("lr") == self.lr, "model.optimizer.lr", f"the optimizer takes model.lr ({self.lr}); set that instead")

    def check_optimization(self, max_epochs: int) -> None:
        """Build the optimizer (of a stand-in parameter) and its scheduler over `max_epochs` once,
        so that a bad target or argument fails in one line before any work (the training config
        calls it, once the trainer's settings are checked)."""
        optimizer = built("model.optimizer", lambda: instantiate(self.optimizer)([torch.zeros(1, requires_grad=True)]))
        built("model.scheduler", lambda: instantiate(self.scheduler)(optimizer, max_epochs=max_epochs))


def built(key: str, build: Callable[[], Any]) -> Any:
    """What `build` returns; ConfigError naming config `key` when it cannot build it."""
    try:
        return build()
    except (InstantiationException, TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {str(exc).splitlines()[0]}") from exc


def checked(schema: type[Config], values: Config | Mapping[str, Any]) -> Config:
    """`values` as a `schema` object: as is when it is one, else plain values (a checkpoint's
    hyper-parameters) merged into the schema and checked."""
    if isinstance(values, schema):
        return values
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))


class BaseAutoencoder(L.LightningModule):
    """Encoder/decoder pair trained on per-sample loss terms.

    Subclasses define `loss_terms` (the maths) and the latent-space methods; this class logs
    `train/<term>` (epoch means; the loss as `train/loss_step` and `train/loss_epoch`), `val/<term>`
    and `test/<term>` (torchmetrics means), all synced across ranks.
    """

    config_class: ClassVar[type[AEConfig]] = AEConfig
    terms: ClassVar[tuple[str, ...]] = ("loss", "recon", "mse")
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    def __init__(self, model: AEConfig, net: NetConfig, image_shape: Sequence[int]) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.cfg = replace(model, likelihood=resolve_likelihood(model.likelihood, self.image_shape))
        # the checkpoint's record (the stage logs the flattened config once)
        self.save_hyperparameters({"model": plain(self.cfg), "net": plain(net), "image_shape": list(self.image_shape)}, logger=False)
        self.likelihood = build_likelihood(self.cfg.likelihood, self.image_shape, self.cfg.gaussian_std)
        decoder_shape = (self.likelihood.params * self.image_shape[0], *self.image_shape[1:])
        self.encoder = net.encoder(self.image_shape, self.encoder_out_features)
        self.decoder = net.decoder(decoder_shape, self.code_features)
        self.val_means = nn.ModuleDict({term: MeanMetric() for term in self.terms})
        self.test_means = nn.ModuleDict({term: MeanMetric() for term in self.terms})

    @property
    def encoder_out_features(self) -> int:
        return self.cfg.latent_dim

    @property
    def code_features(self) -> int:
        """The width of the codes `decode` takes."""
        return self.cfg.latent_dim

    # --- the shared API -----------------------------------------------------------------
    def encode(self, x: Tensor) -> Any:
        """The encoder's output for images `x`."""
        return self.encoder(x)

    def embed(self, x: Tensor) -> Tensor:
        """A deterministic latent code per image (features for probes and latent maps)."""
        return self.encode(x)

    def decode(self, z: Tensor) -> Tensor:
        """Mean images in [0, 1] (or vectors) for latent codes `z`."""
        return self.likelihood.mean(self.decoder(z))

    def reconstruct(self, x: Tensor) -> Tensor:
        """Mean reconstruction of images `x` through their deterministic code."""
        return self.decode(self.embed(x))

    # --- the capability protocol (see `Capability`) ------------------------------------
    @classmethod
    def supports(cls, capability: Capability | str) -> bool:
        """Whether the model can do `capability`."""
        return Capability(capability) in cls.capabilities

    def sample(self, n: int) -> Tensor:
        """`n` images generated from the prior."""
        raise NotImplementedError(f"{type(self).__name__} has no prior to sample from; use a VAE")

    def sample_given(self, y: Tensor) -> Tensor:
        """One image generated for each class label in `y` (N,)."""
        raise NotImplementedError(f"{type(self).__name__} cannot generate a given class; use ssvae")

    def decode_given(self, z: Tensor, y: Tensor) -> Tensor:
        """Mean images for latent codes `z` (N, latent_dim) and class labels `y` (N,)."""
        raise NotImplementedError(f"{type(self).__name__} cannot generate a given class; use ssvae")

    def classify(self, x: Tensor) -> Tensor:
        """Class probabilities (B, classes) of images `x`."""
        raise NotImplementedError(f"{type(self).__name__} has no classifier; use ssvae")

    def log_likelihood_bounds(self, x: Tensor, k: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Per-image lower bounds on log p(x) in nats from `k` importance samples per image:
        'elbo' (a k-sample estimate of the ELBO) and 'log_px' (the importance-weighted bound)."""
        raise NotImplementedError(f"{type(self).__name__} has no likelihood; use a VAE")

    def score_anomaly(self, x: Tensor) -> Tensor:
        """Per-sample anomaly score (higher = more anomalous)."""
        raise NotImplementedError

    def loss_terms(self, x_in: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Per-sample loss terms (each of shape (B,)) for inputs `x_in` and clean `target`."""
        raise NotImplementedError

    def compile_loss(self) -> None:
        """`torch.compile` this model's `loss_terms` (the nets and the likelihood: the step's
        maths) in place; the Lightning hooks and their logging around it stay eager (a compiled
        module fails inside `log_dict` at batch 512), and the weights keep their checkpoint keys."""
        self.loss_terms = torch.compile(self.loss_terms)

    def training_terms(self, batch: Any) -> dict[str, Tensor]:
        """Per-sample loss terms of a training batch (its inputs corrupted); the mean of 'loss' is
        the step's objective."""
        x = batch[0]
        return self.loss_terms(corrupt(x, self.cfg.corruption, self.cfg.corruption_level), x)

    # --- Lightning hooks ----------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        terms = self.training_terms(batch)
        loss = terms["loss"].mean()
        if not torch.isfinite(loss):
            values = ", ".join(f"{name}={terms[name].detach().mean().item():.4g}" for name in self.terms)
            raise TrainingError(f"non-finite loss at step {self.global_step} (epoch {self.current_epoch}): {values}")
        # Each `self.log` costs Lightning ~0.3 ms of Python, so a step logs at most one value, and
        # only on the steps whose metrics go to the logger; sync_dist: the mean over all ranks.
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            self.log("train/loss_step", loss, prog_bar=True, sync_dist=True)
        # The epoch means of the terms are summed here and logged once, at the epoch's last batch
        # (before the callbacks' `on_train_epoch_end`, which read them).
        self._train_sums += torch.stack([terms[name].detach().float().sum() for name in self.terms])
        self._train_count += len(terms["loss"])
        if batch_idx + 1 == self.trainer.num_training_batches:
            names = ["train/loss_epoch", *(f"train/{name}" for name in self.terms[1:])]
            self.log_dict(dict(zip(names, self._train_sums / self._train_count)), on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_sums, self._train_count = torch.zeros(len(self.terms), device=self.device), 0

    def _update_means(self, means: nn.ModuleDict, stage: str, x: Tensor) -> None:
        terms = self.loss_terms(x, x)
        for name, metric in means.items():
            metric.update(terms[name])
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "loss")

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._update_means(self.val_means, "val", batch[0])

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._update_means(self.test_means, "test", batch[0])

    def configure_optimizers(self) -> dict[str, Any]:
        """The config's optimizer over the parameters, and its scheduler over the trainer's
        max_epochs, stepped once per epoch."""
        optimizer = instantiate(self.cfg.optimizer)(self.parameters())
        scheduler = instantiate(self.cfg.scheduler)(optimizer, max_epochs=self.trainer.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
