"""Hydra finds `model/<kind>_schema` (the schema a `conf/model/*.yaml` option lists in its
defaults) here: the `config_class` of model kind `<kind>` (`aevae.models.model_class`), its module
imported only when a config that Hydra composes selects that kind. A training of one kind thus
runs no other kind's code (aevae.run.code_deps hashes the same files for DVC).
Hydra imports every module under `hydra_plugins` when it starts: this one imports no aevae code
before a schema is asked for."""

from typing import Optional

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

SCHEME = "aevae-models"
GROUP = "model"
SUFFIX = "_schema"


def kind_of(config_path: str) -> str | None:
    """`<kind>` of `model/<kind>_schema[.yaml]` when that module of aevae.models exists, else None."""
    from importlib.util import find_spec

    group, _, name = config_path.removesuffix(".yaml").partition("/")
    kind = name.removesuffix(SUFFIX)
    if group != GROUP or not name.endswith(SUFFIX) or not kind.isidentifier():
        return None
    return kind if find_spec(f"aevae.models.{kind}") is not None else None


class ModelSchemaSource(ConfigSource):
    """The model kinds' schemas, each loaded on demand."""

    @staticmethod
    def scheme() -> str:
        return SCHEME

    def load_config(self, config_path: str) -> ConfigResult:
        from aevae.models import model_class

        kind = kind_of(config_path)
        if kind is None:
            raise ConfigLoadError(f"{config_path}: not a model kind's schema")
        return ConfigResult(config=OmegaConf.structured(model_class(kind).config_class), path=f"{SCHEME}://", provider="aevae", header={"package": None})

    def available(self) -> bool:
        return True

    def is_group(self, config_path: str) -> bool:
        return config_path.rstrip("/") == GROUP

    def is_config(self, config_path: str) -> bool:
        return kind_of(config_path.rstrip("/")) is not None

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> list[str]:
        if config_path.rstrip("/") != GROUP or results_filter == ObjectType.GROUP:
            return []
        from aevae.models import all_kinds

        return sorted(f"{kind}{SUFFIX}" for kind in all_kinds())


class ModelSchemaSearchPath(SearchPathPlugin):
    """Adds the model kinds' schemas to every config search path."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="aevae", path=f"{SCHEME}://")
