"""LightningModules: the registry of model kinds, and checkpoint loading.

A kind is found by its config's `name`, as anomalib discovers its models: the module
`aevae.models.<name>` defines one subclass of `BaseAutoencoder` (its schema, `config_class`,
beside it). The module is imported only when a config or a checkpoint names the kind, so a
stage runs (and DVC hashes, aevae.run.code_deps) the code of its own kinds only.
"""

import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aevae.errors import ConfigError
from aevae.models.base import AEConfig, BaseAutoencoder, Capability, checked
from aevae.nets import NETS, NetConfig
from aevae.run.checkpoints import read_checkpoint

KINDS: dict[str, type[BaseAutoencoder]] = {}  # the kinds found so far, by name (a test may add its own)
KIND_NAME = re.compile(r"[a-z][a-z0-9_]*")


def defined_kind(module: Any) -> type[BaseAutoencoder] | None:
    """The `BaseAutoencoder` subclass that `module` defines, or None."""
    found = [obj for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, BaseAutoencoder) and obj.__module__ == module.__name__ and obj is not BaseAutoencoder]
    return found[0] if len(found) == 1 else None


def all_kinds() -> dict[str, type[BaseAutoencoder]]:
    """Every kind of the package, by name (imports every module: for listings and messages)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in KINDS and (kind := defined_kind(importlib.import_module(f"{__name__}.{info.name}"))):
            KINDS[info.name] = kind
    return dict(sorted(KINDS.items()))


def model_class(name: str) -> type[BaseAutoencoder]:
    """The kind named `name` (`model.name`), its module imported on first use; ConfigError
    listing the kinds when there is none."""
    if name not in KINDS:
        spec = importlib.util.find_spec(f"{__name__}.{name}") if KIND_NAME.fullmatch(name) else None
        kind = defined_kind(importlib.import_module(spec.name)) if spec else None
        if kind is None:
            raise ConfigError(f"model.name: unknown model {name!r}; expected one of {', '.join(all_kinds())}")
        KINDS[name] = kind
    return KINDS[name]


def build_model(model_cfg: AEConfig | Mapping[str, Any], net_cfg: NetConfig | Mapping[str, Any], image_shape: Sequence[int]) -> BaseAutoencoder:
    """A fresh model of the kind `model_cfg` names, from the typed configs (plain values, such as
    a checkpoint's hyper-parameters, are first checked into the kind's and the net's schemas)."""
    kind = model_class(model_cfg["name"] if isinstance(model_cfg, Mapping) else model_cfg.name)
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


__all__ = ["KINDS", "AEConfig", "BaseAutoencoder", "Capability", "all_kinds", "build_model", "load_model", "model_class"]
