"""One module per DVC stage, each its schema (a dataclass) beside `run(cfg: <the schema>) ->
metrics`, over the skeleton in `common`: validate (the typed config the stage runs on) -> load
splits -> open the run -> compute -> write atomically -> log."""

from importlib import import_module
from typing import get_type_hints


def schema(stage: str) -> type:
    """The schema of `stage`'s config, found by the stage's name: the type of the `cfg` that
    `aevae.stages.<stage>.run` takes (importing that module)."""
    return get_type_hints(import_module(f"{__name__}.{stage}").run)["cfg"]
