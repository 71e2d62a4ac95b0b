"""Reading the project's structure from its source: imports inside `src/aevae`, and the config
files an entry point composes. Shared by the structure tests."""

from pathlib import Path

from aevae.run import code_deps

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"
PACKAGE = "aevae"
CONF = REPO_ROOT / "conf"


def module_file(module: str) -> Path | None:
    """The file of an `aevae.*` module or package, or None if there is none."""
    return code_deps.module_file(SRC, module)


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """The `aevae.*` modules that a file imports, anywhere in it (lazy imports included)."""
    return code_deps.imported_modules(SRC, path)


def import_closure(path: Path) -> set[Path]:
    """Every `src/aevae` file that importing `path` can execute."""
    return code_deps.import_closure(SRC, path)


def import_graph() -> dict[str, set[str]]:
    """module -> the `aevae` modules it imports (without the packages implied)."""
    return {module_name(path): imported_modules(path) for path in sorted((SRC / PACKAGE).rglob("*.py"))}


config_name = code_deps.config_name


def composed_config_paths(name: str) -> set[Path]:
    """`conf/<name>.yaml`, the primary configs it extends, and the config groups it selects."""
    return code_deps.composed_config_paths(CONF, name)


def covered(path: Path, deps: list[str]) -> bool:
    """Whether a DVC dependency list names `path` or a directory holding it."""
    return any(path == REPO_ROOT / dep or (REPO_ROOT / dep) in path.parents for dep in deps)
