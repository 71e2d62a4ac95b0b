"""Reading the project's structure from its source: imports inside `src/aevae`, and the config
files an entry point composes. Shared by the structure tests."""

import ast
import re
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"
PACKAGE = "aevae"
CONF = REPO_ROOT / "conf"


def module_file(module: str) -> Path | None:
    """The file of an `aevae.*` module or package, or None if there is none."""
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """The `aevae.*` modules that a file imports, anywhere in it (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == PACKAGE and module_file(name):
                found.add(name)
    return found


def with_parents(module: str) -> set[str]:
    """A module and the packages that Python imports first."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def import_closure(path: Path) -> set[Path]:
    """Every `src/aevae` file that importing `path` can execute."""
    seen: set[str] = set()
    todo = [m for name in imported_modules(path) for m in with_parents(name)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += [m for name in imported_modules(module_file(module)) for m in with_parents(name)]
    return {module_file(module) for module in seen}


def import_graph() -> dict[str, set[str]]:
    """module -> the `aevae` modules it imports (without the packages implied)."""
    return {module_name(path): imported_modules(path) for path in sorted((SRC / PACKAGE).rglob("*.py"))}


def config_name(entry_point: Path) -> str:
    """The primary config an entry point composes: `main(<stage>.run, "<name>")`."""
    return re.search(r'main\(\w+\.run, "(\w+)"\)', entry_point.read_text()).group(1)


def composed_config_paths(name: str) -> set[Path]:
    """`conf/<name>.yaml`, the primary configs it extends, and every config group it selects by
    default (the whole group directory: a stage may be run with any option of it)."""
    path = CONF / f"{name}.yaml"
    paths = {path}
    for entry in yaml.safe_load(path.read_text()).get("defaults", []):
        if isinstance(entry, str):
            if entry != "_self_" and not entry.endswith("_schema") and (CONF / f"{entry}.yaml").is_file():
                paths |= composed_config_paths(entry)
        else:
            for group, option in entry.items():
                if option is not None and not group.startswith(("override", "hydra")):
                    paths.add(CONF / group)
    return paths


def covered(path: Path, deps: list[str]) -> bool:
    """Whether a DVC dependency list names `path` or a directory holding it."""
    return any(path == REPO_ROOT / dep or (REPO_ROOT / dep) in path.parents for dep in deps)
