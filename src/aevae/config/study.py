"""The study's `params.yaml`: its schema, and how a model's entry becomes the Hydra overrides of
its training.

A key of `train` (shared by every model) or of a `models.<name>` entry is any key of the
training config's `model`, `net`, `trainer` or `data` section, written without the section
(`lr`, `beta`, `hidden_dims`, `max_epochs`, `precision`, `batch_size`); `model` and `net` choose
the config options (`model: vae`, `net: conv`). Both hold only what differs from `conf/`, whose
defaults are the study's, so a training run by hand is the study's. Keys that hold for the whole
study (the data set, the split, the seed) live at the top of `params.yaml` only.
"""

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aevae.config import Dataset, ResizeFilter
from aevae.errors import ConfigError

SECTIONS = ("model", "net", "trainer", "data")  # where an entry's keys are looked up, in this order
CHOICES = ("model", "net")  # entry keys that choose a config option
STUDY_WIDE = {"name", "label", "path", "prepared", "split_seed", "val_fraction", "test_fraction", "train_classes", "image_size", "channels", "resize"}
RESERVED_NAMES = {"classifier", "pca", "pixels", "corrupted"}  # folders and report columns of their own
NAME = re.compile(r"[a-z][a-z0-9_]*")
SEED_RANGE = range(2**32)  # what NumPy's and Lightning's seeding take (Lightning would quietly use 0 instead)


@dataclass
class StudyData:
    """The data keys of `params.yaml`: the prepare stage's `data.<key>` (a `data.path` the data
    set does not read is left out: digits and sprites are built in)."""

    name: Dataset = MISSING  # mnist | digits | folder | arrays (sprites: its own study)
    path: Optional[str] = MISSING  # the raw data DVC tracks: MNIST's IDX folder, the user's folder or array file
    split_seed: int = MISSING
    image_size: Optional[int] = MISSING
    channels: Optional[int] = MISSING
    resize: ResizeFilter = MISSING

    def overrides(self) -> list[tuple[str, str, Any]]:
        """The prepare stage's data overrides: (config key, params.yaml key, value) each."""
        keys = {"split_seed": self.split_seed, "image_size": self.image_size, "channels": self.channels, "resize": self.resize.value}
        if self.name.reads_path:
            keys = {"path": self.path, **keys}
        return [("data", "data.name", self.name.value), *((f"data.{key}", f"data.{key}", value) for key, value in keys.items())]


@dataclass
class ClassifierParams:
    max_epochs: int = MISSING


@dataclass
class EvaluateParams:
    iw_samples: int = MISSING


@dataclass
class AnomalyParams:
    models: list[str] = MISSING  # the keys of `models` that also get one-class models
    protocol: str = MISSING  # one_class | one_anomalous (checked by the anomaly stage's schema)
    normal_classes: Optional[list[int]] = MISSING  # null: every class of the data
    iw_samples: int = MISSING


@dataclass
class EpochsParams:
    train: int = MISSING  # every main training's max_epochs (`train:` or a model's entry may set its own)
    anomaly: int = MISSING  # each one-class model's max_epochs


@dataclass
class ProbeParams:
    labels_per_class: list[int] = MISSING
    repeats: int = MISSING


@dataclass
class StudyParams:
    """The keys of `params.yaml` (comments there say what each one does)."""

    data: StudyData = MISSING
    seed: int = MISSING
    trainer: str = MISSING
    pca_components: Optional[int] = MISSING
    epochs: dict[str, EpochsParams] = MISSING  # per data set
    train: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = MISSING
    classifier: ClassifierParams = MISSING
    evaluate: EvaluateParams = MISSING
    anomaly: AnomalyParams = MISSING
    probe: ProbeParams = MISSING


def nearest(key: str, valid: list[str]) -> str:
    """` (did you mean X?)` for the closest of `valid`, or `` when none is close."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _check_keys(node: Any, schema: type, path: str) -> None:
    """Refuse a key that `schema` does not declare, naming it and the nearest valid one."""
    if not isinstance(node, Mapping):
        return
    declared = {f.name: f for f in fields(schema)}
    for key, value in node.items():
        where = f"{path}{key}"
        if key not in declared:
            raise ConfigError(f"params.yaml {where}: unknown key{nearest(str(key), list(declared))}; valid keys: {', '.join(declared)}")
        kind = declared[key].type
        if is_dataclass(kind):
            _check_keys(value, kind, f"{where}.")


def load(path: str | Path) -> StudyParams:
    """`params.yaml` as a typed object; one-line ConfigError naming the key on an unknown key,
    a wrong type, a model name that cannot name folders, runs and metrics, or a `train` key that
    every model's entry overrides (it would reach no training)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found (run from the project's root)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    _check_keys(raw, StudyParams, "")
    try:
        params = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(StudyParams), raw))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(f"params.yaml {key}: {str(exc).splitlines()[0]}") from exc
    for where, seed in (("seed", params.seed), ("data.split_seed", params.data.split_seed)):
        if seed not in SEED_RANGE:
            raise ConfigError(f"params.yaml {where}: must be in 0..{SEED_RANGE[-1]}, got {seed}")
    for name, entry in params.models.items():
        if not NAME.fullmatch(name) or name in RESERVED_NAMES:
            raise ConfigError(f"params.yaml models.{name}: a model's name is lower-case letters, digits and _ and not one of {', '.join(sorted(RESERVED_NAMES))}")
        if not isinstance(entry, Mapping) or "model" not in entry:
            raise ConfigError(f"params.yaml models.{name}: name its kind, `model: <an option of conf/model>`")
    if not params.models:
        raise ConfigError("params.yaml models: list at least one model")
    for key in params.train:
        if all(key in entry for entry in params.models.values()):
            raise ConfigError(f"params.yaml train.{key}: every model sets its own (models.<name>.{key}), so it reaches no training; remove it from train or from the models' entries")
    for name in params.anomaly.models:
        if name not in params.models:
            raise ConfigError(f"params.yaml anomaly.models: {name} is not a key of models{nearest(name, list(params.models))}; valid: {', '.join(params.models)}")
    for name in params.epochs:
        if name not in Dataset.__members__:
            raise ConfigError(f"params.yaml epochs.{name}: not a data set{nearest(name, list(Dataset.__members__))}; valid: {', '.join(Dataset.__members__)}")
    if params.data.name.value not in params.epochs:
        raise ConfigError(f"params.yaml epochs: no budget for data set {params.data.name.value}; add `epochs.{params.data.name.value}: {{train: <epochs>, anomaly: <epochs>}}`")
    return params


def override_value(value: Any) -> str:
    """`value` in Hydra's override grammar (strings quoted where a bare word would change type)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{key}:{override_value(item)}" for key, item in value.items()) + "}"
    text = str(value)
    if re.fullmatch(r"[\w./\-]+", text) and yaml.safe_load(text) == text:
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def section_of(key: str, composed: DictConfig, where: str, name: str) -> str:
    """The section of model `name`'s composed training config that holds entry key `key`."""
    if key in STUDY_WIDE:
        raise ConfigError(f"params.yaml {where}: holds for the whole study; set it at the top of params.yaml (data, seed)")
    found = [section for section in SECTIONS if key in composed[section]]
    if not found:
        valid = sorted({k for section in SECTIONS for k in composed[section]} - STUDY_WIDE) + list(CHOICES)
        raise ConfigError(f"params.yaml {where}: not a key of {name}'s model, net, trainer or data config{nearest(key, valid)}")
    return found[0]


def entry_keys(params: StudyParams, name: str) -> dict[str, tuple[str, Any]]:
    """Model `name`'s training keys: the data set's `epochs`, then `train`'s, then its entry's
    (later ones win), each with the params.yaml path it was written at: key -> (path, value)."""
    data = params.data.name.value
    keys = {"max_epochs": (f"epochs.{data}.train", params.epochs[data].train)}
    keys |= {key: (f"train.{key}", value) for key, value in params.train.items()}
    return keys | {key: (f"models.{name}.{key}", value) for key, value in params.models[name].items()}
