"""The code an entry point runs: the `aevae` source files it can import (lazy imports included)
and the config files it composes. The configure stage records their hashes for DVC, and the
structure tests check the package's layers with the same reading."""

import ast
import hashlib
import re
from pathlib import Path

import yaml

PACKAGE = "aevae"


def module_file(src: Path, module: str) -> Path | None:
    """The file of an `aevae.*` module or package under `src`, or None if there is none."""
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(src: Path, path: Path) -> set[str]:
    """The `aevae.*` modules that a file imports, anywhere in it (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] == PACKAGE and module_file(src, name)}
    return found


def with_parents(module: str) -> set[str]:
    """A module and the packages that Python imports first."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def import_closure(src: Path, path: Path) -> set[Path]:
    """Every `src/aevae` file that importing `path` can execute."""
    seen: set[str] = set()
    todo = [m for name in imported_modules(src, path) for m in with_parents(name)]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += [m for name in imported_modules(src, module_file(src, module)) for m in with_parents(name)]
    return {module_file(src, module) for module in seen}


def config_name(entry_point: Path) -> str:
    """The primary config an entry point composes: `main(<stage>.run, "<name>")`."""
    return re.search(r'main\(\w+\.run, "(\w+)"\)', entry_point.read_text()).group(1)


def composed_config_paths(conf: Path, name: str) -> set[Path]:
    """`conf/<name>.yaml`, the primary configs it extends, and every config group it selects by
    default (the whole group directory: a stage may be run with any option of it)."""
    path = conf / f"{name}.yaml"
    paths = {path}
    for entry in yaml.safe_load(path.read_text()).get("defaults", []):
        if isinstance(entry, str):
            if entry != "_self_" and not entry.endswith("_schema") and (conf / f"{entry}.yaml").is_file():
                paths |= composed_config_paths(conf, entry)
        else:
            paths |= {conf / group for group, option in entry.items() if option is not None and not group.startswith(("override", "hydra"))}
    return paths


def target_files(src: Path, config: Path) -> set[Path]:
    """The `aevae` files that a config's Hydra `_target_`s (`aevae.<module>.<name>`) run: each
    module and its import closure."""
    modules = {target.rsplit(".", 1)[0] for target in re.findall(rf"_target_:\s*[\"']?({PACKAGE}\.[\w.]+)", config.read_text())}
    files = {module_file(src, name) for module in modules for name in with_parents(module)} - {None}
    return files.union(*(import_closure(src, path) for path in files))


def entry_point_code(root: Path, entry_point: Path) -> list[Path]:
    """The files, relative to the project `root`, that running `entry_point` reads as code or
    config: itself, its import closure, its composed configs (group folders as their files) and
    the code their `_target_`s name."""
    paths = {entry_point} | import_closure(root / "src", entry_point)
    for path in composed_config_paths(root / "conf", config_name(entry_point)):
        paths |= set(path.rglob("*.yaml")) if path.is_dir() else {path}
    for path in [path for path in paths if path.suffix == ".yaml"]:
        paths |= target_files(root / "src", path)
    return sorted(path.relative_to(root) for path in paths)


def source_md5() -> str:
    """One md5 over this package's sources and the project's configs (`src/aevae/**/*.py`,
    `conf/**/*.yaml`): what a finished or interrupted training must share with the code that
    runs now to be trusted or resumed."""
    src = Path(__file__).resolve().parent
    files = sorted(src.rglob("*.py")) + sorted((src.parents[1] / "conf").rglob("*.yaml"))
    digest = hashlib.md5()
    for path in files:
        digest.update(path.relative_to(src.parents[1]).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
