"""A small classifier of the data's classes (the digits, on MNIST): the feature space in which
generated images are compared with real ones (Fréchet distance) and the labeller of samples (class
coverage). Trained once per data set by the classifier stage on its labels; no downloaded weights."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import MISSING
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from aevae.errors import require
from aevae.io import plain
from aevae.models.base import checked
from aevae.nets.base import check_sizes
from aevae.nets.mlp import mlp

N_CLASSES = 10  # the digits: the classes of a checkpoint that does not record its number


@dataclass
class ClassifierConfig:
    hidden_dims: list[int] = MISSING  # hidden layer widths; the last one is the feature size
    lr: float = MISSING

    def __post_init__(self) -> None:
        check_sizes("classifier.hidden_dims", self.hidden_dims)
        require(self.lr > 0, "classifier.lr", f"must be > 0, got {self.lr}")


class DigitClassifier(L.LightningModule):
    """An MLP on pixels; `forward` gives the features of its last hidden layer (what torchmetrics'
    Fréchet distance calls), `predict` the class."""

    def __init__(self, classifier: ClassifierConfig, image_shape: Sequence[int], n_classes: int = N_CLASSES) -> None:
        super().__init__()
        # the checkpoint's record (the stage logs the flattened config once)
        self.save_hyperparameters({"classifier": plain(classifier), "image_shape": list(image_shape), "n_classes": n_classes}, logger=False)
        self.cfg = classifier
        self.n_classes = n_classes
        self.features = nn.Sequential(nn.Flatten(), mlp([math.prod(image_shape), *self.cfg.hidden_dims], "relu"), nn.ReLU())
        self.head = nn.Linear(self.cfg.hidden_dims[-1], n_classes)
        self.num_features = self.cfg.hidden_dims[-1]
        self.accuracy = nn.ModuleDict({stage: MulticlassAccuracy(n_classes, average="micro") for stage in ("val", "test")})

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)

    def predict(self, x: Tensor) -> Tensor:
        """The most probable class of each image."""
        return self.head(self.features(x)).argmax(1)

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self.head(self.features(x)), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def _score(self, batch: Sequence[Tensor], stage: str) -> None:
        x, y = batch
        self.accuracy[stage].update(self.predict(x), y)
        self.log(f"{stage}/accuracy", self.accuracy[stage], on_step=False, on_epoch=True)

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._score(batch, "val")

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._score(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.cfg.lr)


def load_classifier(checkpoint: str | Path, map_location: Any = "cpu") -> DigitClassifier:
    """A trained classifier from its Lightning checkpoint (weights_only), in eval mode."""
    state = torch.load(checkpoint, map_location=map_location, weights_only=True)
    hparams = state["hyper_parameters"]
    model = DigitClassifier(checked(ClassifierConfig, hparams["classifier"]), hparams["image_shape"], hparams["n_classes"])
    model.load_state_dict(state["state_dict"])
    return model.to(map_location).eval()
