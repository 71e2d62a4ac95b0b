"""The params.yaml of the studies beside the default one (studies/reference, studies/sprites): each
one's schema and the overrides of each of its stages, which the configure stage checks and writes
(with the code each stage runs) as it does the default study's (aevae.config.study).

A stage is `<stage>[/<name>]` -> (its entry point's config name, its overrides); an override is
(config key, params.yaml key, value), so that a bad value is reported at the key the user wrote.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aevae.errors import ConfigError
from aevae.workspace import best_checkpoint

Override = tuple[str, str, Any]
Stages = dict[str, tuple[str, list[Override]]]


@dataclass
class Recipe:
    experiment: str = MISSING  # conf/experiment/<experiment>.yaml
    model: str = MISSING  # its model option (conf/model)


@dataclass
class ReferenceParams:
    """studies/reference/params.yaml: the budget, the trainer and the recipes (one row each)."""

    budget: str = MISSING
    trainer: str = MISSING
    recipes: dict[str, Recipe] = MISSING

    def stages(self, outputs_dir: str) -> Stages:
        """A `recipe/<name>` per recipe (its outputs: `<outputs_dir>/<name>`), and the report."""
        stages: Stages = {
            f"recipe/{name}": ("reference", [("experiment", f"recipes.{name}.experiment", recipe.experiment), ("model", f"recipes.{name}.model", recipe.model), ("budget", "budget", self.budget), ("trainer", "trainer", self.trainer)])
            for name, recipe in self.recipes.items()
        }
        stages["report"] = ("reference_report", [("recipes", "recipes", [f"{outputs_dir}/{name}" for name in self.recipes])])
        return stages


@dataclass
class SpritesModel:
    model: str = MISSING  # conf/model option
    beta: float = MISSING
    seed: int = MISSING


@dataclass
class SpritesParams:
    """studies/sprites/params.yaml: the split, the trainer, what the models share, and the models."""

    split_seed: int = MISSING
    trainer: str = MISSING
    net: str = MISSING
    latent_dim: int = MISSING
    epochs: int = MISSING
    models: dict[str, SpritesModel] = MISSING

    def stages(self, models_dir: str) -> Stages:
        """prepare, a `train/<name>` per model (its checkpoints: `<models_dir>/<name>`) and
        disentangle, which scores them all."""
        stages: Stages = {"prepare": ("prepare", [("data", "data", "sprites"), ("data.split_seed", "split_seed", self.split_seed)])}
        for name, entry in self.models.items():
            where = f"models.{name}"
            stages[f"train/{name}"] = ("train", [
                ("data", "data", "sprites"), ("model", f"{where}.model", entry.model), ("net", "net", self.net), ("trainer", "trainer", self.trainer),
                ("model.beta", f"{where}.beta", entry.beta), ("model.latent_dim", "latent_dim", self.latent_dim),
                ("trainer.max_epochs", "epochs", self.epochs), ("seed", f"{where}.seed", entry.seed),
            ])  # fmt: skip
        stages["disentangle"] = ("disentangle", [(f"+models.{name}", f"models.{name}", best_checkpoint(Path(models_dir) / name)) for name in self.models])
        return stages


DEFAULT_STUDY = "default"  # the configure stage's `study` of the root params.yaml (aevae.config.study)
STUDIES = {"reference": ReferenceParams, "sprites": SpritesParams}  # `study` -> its params' schema


def load(name: str, path: str | Path) -> ReferenceParams | SpritesParams:
    """Study `name`'s params file as a typed object; one-line ConfigError naming the key on an
    unknown key, a missing one or a wrong type."""
    path, schema = Path(path), STUDIES[name]
    if not path.is_file():
        raise ConfigError(f"{path}: not found (run from the project's root)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), raw))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(f"{path} {key}: {str(exc).splitlines()[0]}") from exc
