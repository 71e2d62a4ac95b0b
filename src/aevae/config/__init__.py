"""`register_configs`, which puts the schemas a stage's config needs into Hydra's ConfigStore,
and `validate`, which builds the typed config a stage runs on from a composed one.

Every value lives in conf/; the dataclasses declare the keys, their types and their checks: a
stage's schema beside its `run` (`aevae.stages.<stage>`), the schemas several stages share in
`schemas.py`, a model's or net's beside its class. Hydra rejects an unknown key, a wrong type or
an unknown choice (Enum fields) while composing; `validate(cfg)` then builds the dataclasses,
whose `__post_init__` checks the values and raises a one-line `ConfigError` naming the key.

A stage pays at start-up only for the schemas its config uses: an entry point registers its own
stage's (and those it extends); a model kind's schema is imported when a config selects the kind
(by Hydra: hydra_plugins/aevae_models), so that a stage that trains nothing starts without
Lightning.
"""

from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aevae.config.schemas import (
    Binarization,
    CodeKind,
    DataConfig,
    Dataset,
    LikelihoodConfig,
    LoggerConfig,
    LogRegConfig,
    Progress,
    ResizeFilter,
    TrainerConfig,
    Tracker,
    check_classes,
)
from aevae.errors import ConfigError, require
from aevae.run.sweeps import register_resolvers

GROUP_SCHEMAS: dict[str, type] = {"data": DataConfig, "trainer": TrainerConfig, "logger": LoggerConfig}


def net_schemas() -> dict[str, type]:
    """Each net family's config class, by name."""
    from aevae.nets import NETS

    return dict(NETS)


# a config group whose every option has a schema of its own -> those schemas, by option name;
# registered for the stages whose schema has a node of the group's name
# (a model kind's schema, `model/<kind>_schema`, is found by Hydra where the kind's module is, and
# imported only for the kinds a config selects: hydra_plugins/aevae_models)
OPTION_SCHEMAS: dict[str, Callable[[], dict[str, type]]] = {"net": net_schemas}


def schema_name(schema: type) -> str:
    """The name a stage's schema is registered under: `<stage>_schema`, after the module
    `aevae.stages.<stage>` that defines it."""
    return f"{schema.__module__.rpartition('.')[2]}_schema"


def register_configs(*schemas: type) -> None:
    """Register with Hydra's ConfigStore what composing configs of these stage `schemas` needs,
    and the `aevae.*` resolvers: each schema, and each stage schema it extends (a config may
    extend another stage's: conf/anomaly.yaml extends conf/train.yaml), as `schema_name`; the
    data, trainer and logger groups' `<group>/<group>_schema`; and for a schema with a `net` node,
    `net/<name>_schema` of every net (a model kind's schema is found by Hydra when a config
    selects it: hydra_plugins/aevae_models). Every entry point calls it with its stage's schema
    (`aevae.stages.schema`)."""
    register_resolvers()
    store = ConfigStore.instance()
    for schema in schemas:
        for stage_schema in [base for base in schema.__mro__ if is_dataclass(base)]:
            store.store(name=schema_name(stage_schema), node=stage_schema)
    for group, group_schema in GROUP_SCHEMAS.items():
        store.store(group=group, name=f"{group}_schema", node=group_schema)
    nodes = {field.name for schema in schemas for field in fields(schema)}
    for group in [group for group in OPTION_SCHEMAS if group in nodes]:
        for name, option_schema in OPTION_SCHEMAS[group]().items():
            store.store(group=group, name=f"{name}_schema", node=option_schema)


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
    "GROUP_SCHEMAS",
    "OPTION_SCHEMAS",
    "Binarization",
    "CodeKind",
    "DataConfig",
    "Dataset",
    "LikelihoodConfig",
    "LogRegConfig",
    "LoggerConfig",
    "Progress",
    "ResizeFilter",
    "TrainerConfig",
    "Tracker",
    "check_classes",
    "register_configs",
    "schema_name",
    "validate",
]
