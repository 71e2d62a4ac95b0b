"""The code a stage runs: the source files it can import (lazy imports included) or names to run,
and the config files it composes. The configure stage writes their md5s for DVC, so that a stage
re-runs exactly when one of them changes; the structure tests check the package's layers with
the same reading of imports.

A stage's code is read from the source, plus what the source finds by name:
- the model kinds (`aevae.models.<kind>`, imported by the config's or checkpoint's `name`): those
  its config composes (`model.name`, and each `<kind>_schema` its model options list) and those
  of the trained models it loads, as the caller says;
- Hydra's plugins under `src/hydra_plugins` (Hydra imports them all when it starts; what they
  import lazily, the model kinds' registry, runs only when a model kind is composed);
- a sibling source file that a module names (`Path(__file__).with_name("x.py")`: a file logged
  and run elsewhere, as MLflow's model code);
- the modules that its configs name by a Hydra `_target_` (`aevae.evaluation.complexity.total_variation`);
- of `conf/`, the stage's primary config and those it extends, and of each config group only the
  option chosen and the options it extends (`conf/model/beta_vae.yaml` -> `vae.yaml` -> `ae.yaml`).
"""

import ast
import hashlib
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import yaml

PACKAGE = "aevae"
KINDS_PACKAGE = "aevae.models"  # a model kind's module: `aevae.models.<kind>` (aevae.models.model_class)
KIND_GROUP = "model"  # the config group whose `<kind>_schema` entries name a kind (hydra_plugins/aevae_models)
SCHEMA = "_schema"
PLUGINS = "hydra_plugins"


def module_file(src: Path, module: str) -> Path | None:
    """The file of a module or package under `src`, or None if there is none."""
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _parsed(path: Path, stamp: tuple[int, int]) -> ast.Module:
    return ast.parse(path.read_text())


def parsed(path: Path) -> ast.Module:
    """`path`'s syntax tree (read again when the file changes)."""
    stat = path.stat()
    return _parsed(path, (stat.st_mtime_ns, stat.st_size))


def imported_modules(src: Path, path: Path) -> set[str]:
    """The `aevae.*` modules that a file imports, anywhere in it (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] == PACKAGE and module_file(src, name)}
    return found


def named_siblings(path: Path) -> set[Path]:
    """The source files beside `path` that it names in a string (`"mlflow_model_code.py"`)."""
    names = {node.value for node in ast.walk(parsed(path)) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    return {path.with_name(name) for name in names if re.fullmatch(r"\w+\.py", name) and path.with_name(name).is_file()}


def with_parents(module: str) -> set[str]:
    """A module and the packages that Python imports first."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def import_closure(src: Path, path: Path, modules: Iterable[str] = ()) -> set[Path]:
    """Every `src` file that running `path` (and importing `modules`) can execute: what it
    imports, and the sibling files that an imported module names, transitively."""
    seen: set[Path] = set()
    todo = [path, *(module_file(src, m) for name in modules for m in with_parents(name))]
    while todo:
        file = todo.pop()
        if file is None or file in seen:  # None: a namespace package
            continue
        seen.add(file)
        todo += [module_file(src, m) for name in imported_modules(src, file) for m in with_parents(name)]
        todo += named_siblings(file)
    return seen - {path}


def config_name(entry_point: Path) -> str:
    """The primary config an entry point composes: `main(<stage>.run, "<name>")`."""
    return re.search(r'main\(\w+\.run, "(\w+)"\)', entry_point.read_text()).group(1)


def defaults(path: Path) -> list:
    return yaml.safe_load(path.read_text()).get("defaults", [])


def primary_config_paths(conf: Path, name: str) -> set[Path]:
    """`conf/<name>.yaml` and the primary configs it extends (not its config groups)."""
    path = conf / f"{name}.yaml"
    paths = {path}
    for entry in defaults(path):
        if isinstance(entry, str) and entry != "_self_" and (conf / f"{entry}.yaml").is_file():
            paths |= primary_config_paths(conf, entry)
    return paths


def option_paths(conf: Path, group: str, option: str) -> tuple[set[Path], set[str]]:
    """The files of option `option` of config group `group` and of the options of that group it
    extends, and the model kinds whose schema they list."""
    path = conf / group / f"{option}.yaml"
    if not path.is_file():  # an option of Hydra's own (hydra/launcher: basic) or a schema
        return set(), set()
    paths, kinds = {path}, set()
    for entry in defaults(path):
        if isinstance(entry, str) and entry.endswith(SCHEMA):
            kinds |= {entry.removesuffix(SCHEMA)} if group == KIND_GROUP else set()
        elif isinstance(entry, str) and entry != "_self_":
            more, more_kinds = option_paths(conf, group, entry)
            paths, kinds = paths | more, kinds | more_kinds
    return paths, kinds


def composed_config_paths(conf: Path, name: str, choices: Mapping[str, str | None]) -> tuple[set[Path], set[str]]:
    """The config files that composing `name` with these group `choices` (Hydra's
    `hydra.runtime.choices`) reads, and the model kinds whose schema it loads."""
    paths, kinds = primary_config_paths(conf, name), set()
    for group, option in choices.items():
        if option is not None:
            more, more_kinds = option_paths(conf, group.split("@")[0], option)  # `model@stack.model`: the model group
            paths, kinds = paths | more, kinds | more_kinds
    return paths, kinds


def target_modules(config: Path) -> set[str]:
    """The `aevae` modules that a config's Hydra `_target_`s (`aevae.<module>.<name>`) name."""
    return {target.rsplit(".", 1)[0] for target in re.findall(rf"_target_:\s*[\"']?({PACKAGE}\.[\w.]+)", config.read_text())}


def stage_code(root: Path, name: str, choices: Mapping[str, str | None], kinds: Iterable[str] = ()) -> list[Path]:
    """The files, relative to the project `root`, that the stage of entry point
    `pipelines/<name>.py` reads as code or config when its config composes with `choices` and it
    runs (or loads trained models of) the model kinds `kinds`."""
    src, conf = root / "src", root / "conf"
    entry_point = root / "pipelines" / f"{name}.py"
    configs, schema_kinds = composed_config_paths(conf, name, choices)
    plugins = set((src / PLUGINS).rglob("*.py"))
    modules = [f"{KINDS_PACKAGE}.{kind}" for kind in sorted({*kinds, *schema_kinds})]
    modules += sorted(set().union(*(target_modules(path) for path in configs)))
    paths = {entry_point} | import_closure(src, entry_point, modules) | plugins | configs
    return sorted(path.relative_to(root) for path in paths)


def source_md5() -> str:
    """One md5 over this package's sources and the project's configs (`src/aevae/**/*.py`,
    `conf/**/*.yaml`): what a finished or interrupted training must share with the code that
    runs now to be trusted or resumed."""
    package = Path(__file__).resolve().parents[1]
    root = package.parents[1]
    files = sorted(package.rglob("*.py")) + sorted((root / "conf").rglob("*.yaml"))
    digest = hashlib.md5()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
