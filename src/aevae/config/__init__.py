"""The config schemas, `register_configs`, which puts those a stage's config needs (with the
model and net registries' schemas) into Hydra's ConfigStore, and `validate`, which builds them from
a composed config.

Every value lives in conf/; the dataclasses (`schemas.py`; `classifier_schemas.py`, the two that
hold the digit classifier's config) declare the keys, their types and their checks. Hydra rejects
an unknown key, a wrong type or an unknown choice (Enum fields) while composing; `validate(cfg)`
then builds the dataclasses, whose `__post_init__` checks the values and raises a one-line
`ConfigError` naming the key.

A stage pays at start-up only for the schemas its config uses: those that come with a Lightning
module (the model group's, the digit classifier's) are imported when a config that holds them is
registered, or when their name is first read from this package, so that a stage that trains
nothing starts without Lightning.
"""

import sys
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aevae.config.schemas import (
    AnomalyConfig,
    AnomalyProtocol,
    CompareConfig,
    ConfigureConfig,
    DataConfig,
    Dataset,
    DisentangleConfig,
    EvaluateConfig,
    LoggerConfig,
    MetricsFile,
    PrepareConfig,
    ProbeConfig,
    ReferenceReportConfig,
    ReferenceTask,
    ReportConfig,
    ResizeFilter,
    ScoreConfig,
    TrainConfig,
    TrainerConfig,
    check_budget,
)
from aevae.errors import ConfigError, require
from aevae.run.sweeps import register_resolvers

# stage -> the name of its schema, registered as `<stage>_schema`
STAGE_SCHEMAS: dict[str, str] = {
    "train": "TrainConfig",
    "prepare": "PrepareConfig",
    "configure": "ConfigureConfig",
    "classifier": "ClassifierStageConfig",
    "evaluate": "EvaluateConfig",
    "anomaly": "AnomalyConfig",
    "probe": "ProbeConfig",
    "report": "ReportConfig",
    "compare": "CompareConfig",
    "reference": "ReferenceConfig",
    "reference_report": "ReferenceReportConfig",
    "disentangle": "DisentangleConfig",
    "score": "ScoreConfig",
}
GROUP_SCHEMAS: dict[str, type] = {"data": DataConfig, "trainer": TrainerConfig, "logger": LoggerConfig}
# the schemas of `classifier_schemas` (they import Lightning): read from this package on first use
CLASSIFIER_SCHEMAS = ("ClassifierStageConfig", "ReferenceConfig", "SemiSupervisedConfig")


def __getattr__(name: str) -> type:
    """A schema of `CLASSIFIER_SCHEMAS`, its module imported on first use (PEP 562)."""
    if name not in CLASSIFIER_SCHEMAS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import aevae.config.classifier_schemas as classifier_schemas

    return getattr(classifier_schemas, name)


def stage_schema(stage: str) -> type:
    """The schema of `stage`'s config."""
    return getattr(sys.modules[__name__], STAGE_SCHEMAS[stage])


def model_schemas() -> dict[str, type]:
    """Each registered model's config class, by name (the models are LightningModules)."""
    from aevae.models import MODELS

    return {name: model.config_class for name, model in MODELS.items()}


def net_schemas() -> dict[str, type]:
    """Each net family's config class, by name."""
    from aevae.nets import NETS

    return dict(NETS)


# a config group whose every option has a schema of its own -> those schemas, by option name;
# registered for the stages whose schema has a node of the group's name
OPTION_SCHEMAS: dict[str, Callable[[], dict[str, type]]] = {"model": model_schemas, "net": net_schemas}


def register_configs(*stages: str) -> None:
    """Register with Hydra's ConfigStore what composing the configs of `stages` needs (every
    stage's when none is named), and the `aevae.*` resolvers: `<stage>_schema` of every stage (a
    config may extend another stage's; the classifier's and the reference's, which import
    Lightning, only when named),
    `<group>/<group>_schema` of the data, trainer and logger groups, and for a stage whose schema
    has a `model` or `net` node, `model/<name>_schema` of every registered model and
    `net/<name>_schema` of every net. Every entry point calls it with its config's name."""
    register_resolvers()
    store = ConfigStore.instance()
    named = stages or tuple(STAGE_SCHEMAS)
    always = [stage for stage, schema in STAGE_SCHEMAS.items() if schema not in CLASSIFIER_SCHEMAS]
    for stage in dict.fromkeys([*always, *named]):
        store.store(name=f"{stage}_schema", node=stage_schema(stage))
    for group, schema in GROUP_SCHEMAS.items():
        store.store(group=group, name=f"{group}_schema", node=schema)
    nodes = {field.name for stage in named for field in fields(stage_schema(stage))}
    for group in [group for group in OPTION_SCHEMAS if group in nodes]:
        for name, schema in OPTION_SCHEMAS[group]().items():
            store.store(group=group, name=f"{name}_schema", node=schema)


def _reject_unknown_keys(node: Any, path: str) -> None:
    """Hydra lets `+key=value` append keys a schema does not declare; reject them by name."""
    if isinstance(node, ListConfig):
        try:  # a list given by an interpolation holds the values of the node it points to
            items = [] if OmegaConf.is_interpolation(node) else list(node)
        except OmegaConfBaseException:  # a null list
            items = []
        for item in items:
            _reject_unknown_keys(item, path)
        return
    if not isinstance(node, DictConfig) or OmegaConf.get_type(node) is None:  # None: a null node
        return
    schema = OmegaConf.get_type(node)
    if is_dataclass(schema):
        unknown = sorted(set(node.keys()) - {f.name for f in fields(schema)})
        require(not unknown, path or "config", f"unknown key(s) {', '.join(map(str, unknown))}")
    for key, value in node.items_ex(resolve=False):
        _reject_unknown_keys(value, f"{path}.{key}" if path else str(key))


def validate(cfg: Any) -> Any:
    """Build the config's dataclasses, which check every value; returns them, the typed config
    that a stage runs on (a typed config, such as one a stage made for another, is checked again
    into a copy). Raises ConfigError (one line, naming the key) before any data is loaded or any
    work starts."""
    if is_dataclass(cfg):
        cfg = OmegaConf.structured(cfg)
    _reject_unknown_keys(cfg, "")
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:  # e.g. a key appended with `+key=value`
        cause = exc.__cause__ or exc
        message = str(cause).splitlines()[0]
        key = getattr(exc, "full_key", None)
        raise ConfigError(f"{key}: {message}" if key else message) from exc


__all__ = [
    "CLASSIFIER_SCHEMAS",
    "GROUP_SCHEMAS",
    "OPTION_SCHEMAS",
    "STAGE_SCHEMAS",
    "AnomalyConfig",
    "AnomalyProtocol",
    "ClassifierStageConfig",
    "CompareConfig",
    "ConfigureConfig",
    "DataConfig",
    "Dataset",
    "DisentangleConfig",
    "EvaluateConfig",
    "LoggerConfig",
    "MetricsFile",
    "PrepareConfig",
    "ProbeConfig",
    "ReferenceConfig",
    "ReferenceReportConfig",
    "ReferenceTask",
    "ReportConfig",
    "ResizeFilter",
    "ScoreConfig",
    "SemiSupervisedConfig",
    "TrainConfig",
    "TrainerConfig",
    "check_budget",
    "register_configs",
    "stage_schema",
    "validate",
]
