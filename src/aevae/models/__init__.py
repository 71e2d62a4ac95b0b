"""LightningModules: a registry from config names to classes, and checkpoint loading."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aevae.run.checkpoints import read_checkpoint
from aevae.models.ae import Autoencoder
from aevae.models.base import AEConfig, BaseAutoencoder, Capability, checked
from aevae.models.ssvae import SemiSupervisedVAE, SSVAEConfig
from aevae.models.vae import VAEConfig, VariationalAutoencoder
from aevae.nets import NETS, NetConfig

MODELS: dict[str, type[BaseAutoencoder]] = {"ae": Autoencoder, "vae": VariationalAutoencoder, "ssvae": SemiSupervisedVAE}


def build_model(model_cfg: AEConfig | Mapping[str, Any], net_cfg: NetConfig | Mapping[str, Any], image_shape: Sequence[int]) -> BaseAutoencoder:
    """A fresh model of the kind `model_cfg` names, from the typed configs (plain values, such as
    a checkpoint's hyper-parameters, are first checked into the kind's and the net's schemas)."""
    kind = MODELS[model_cfg["name"] if isinstance(model_cfg, Mapping) else model_cfg.name]
    net_schema = NETS[net_cfg["name"] if isinstance(net_cfg, Mapping) else net_cfg.name]
    return kind(checked(kind.config_class, model_cfg), checked(net_schema, net_cfg), image_shape)


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
