"""LightningModules: a registry from config names to classes, and checkpoint loading."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aevae.run.checkpoints import read_checkpoint
from aevae.models.ae import Autoencoder
from aevae.models.base import AEConfig, BaseAutoencoder, Capability
from aevae.models.ssvae import SemiSupervisedVAE, SSVAEConfig
from aevae.models.vae import VAEConfig, VariationalAutoencoder

MODELS: dict[str, type[BaseAutoencoder]] = {"ae": Autoencoder, "vae": VariationalAutoencoder, "ssvae": SemiSupervisedVAE}


def build_model(model_cfg: Mapping[str, Any], net_cfg: Mapping[str, Any], image_shape: Sequence[int]) -> BaseAutoencoder:
    """A fresh model of the class named by `model_cfg["name"]`."""
    return MODELS[model_cfg["name"]](model=dict(model_cfg), net=dict(net_cfg), image_shape=list(image_shape))


def load_model(checkpoint: str | Path, map_location: Any = "cpu") -> BaseAutoencoder:
    """A trained model from a Lightning checkpoint (read with weights_only=True: nothing in the
    file is executed), in eval mode; DataError naming the file when it cannot be read."""
    state = read_checkpoint(checkpoint, map_location)
    hparams = state["hyper_parameters"]
    model = build_model(hparams["model"], hparams["net"], hparams["image_shape"])
    model.load_state_dict(state["state_dict"])
    return model.to(map_location).eval()


__all__ = [
    "MODELS",
    "AEConfig",
    "Autoencoder",
    "BaseAutoencoder",
    "Capability",
    "SSVAEConfig",
    "SemiSupervisedVAE",
    "VAEConfig",
    "VariationalAutoencoder",
    "build_model",
    "load_model",
]
