"""The same model before training, the reference a trained model has to beat in the tests.

A range check (`0 <= auroc <= 1`, `mse < 0.3`) passes for a net that never saw a batch; a
comparison with the model's own initial weights on the same data does not.
"""

from pathlib import Path
from typing import Any

import lightning as L
import torch

from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.models import BaseAutoencoder, build_model

IMPROVED = 0.8  # a trained model's error is at most this fraction of its untrained error


def untrained_model(model: BaseAutoencoder, seed: int = 0) -> BaseAutoencoder:
    """A model of the same class, config and net as `model`, with the initial weights that the
    train stage draws for `seed` (it seeds everything, then builds the model), in eval mode."""
    L.seed_everything(seed, verbose=False)
    hparams = model.hparams
    return build_model(hparams["model"], hparams["net"], hparams["image_shape"]).eval()


def untrained_checkpoint(trained: str | Path, path: Path, seed: int = 0) -> Path:
    """A copy of the checkpoint `trained` with the model's initial weights (`untrained_model`)
    in place of the trained ones; hyperparameters and data config are kept, so a stage reads it
    as it reads the trained one."""
    state = torch.load(trained, map_location="cpu", weights_only=True)
    hparams = state["hyper_parameters"]
    L.seed_everything(seed, verbose=False)
    state["state_dict"] = build_model(hparams["model"], hparams["net"], hparams["image_shape"]).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def validation_metrics(model: BaseAutoencoder, cfg: Any) -> dict[str, float]:
    """`val/<term>` of `model` on the validation split of a train config's data, as training
    reports them (the model's own loss terms, averaged over the configured validation batches)."""
    datamodule = InMemoryDataModule(load_or_prepare(cfg.data), cfg.data, seed=cfg.seed)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, limit_val_batches=cfg.trainer.limit_val_batches,
    )  # fmt: skip
    (metrics,) = trainer.validate(model, datamodule=datamodule, verbose=False)
    return metrics
