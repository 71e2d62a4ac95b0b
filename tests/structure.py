"""Reading the project's structure from its source: imports inside `src/aevae`, and the stages of
the dvc.yaml files. Shared by the structure tests."""

from pathlib import Path

import yaml

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


# the pipelines; their stages run from the repository root (the studies set `wdir: ../..`)
DVC_FILES = ["dvc.yaml", "studies/reference/dvc.yaml", "studies/sprites/dvc.yaml"]
CODE = ("pipelines", "src", "conf")  # what the configure stages hash for the others


def dvc_stages(dvc_file: str) -> dict[str, dict]:
    """The stages of a dvc.yaml that run an entry point: name -> {cmd, deps}."""
    pipeline = yaml.safe_load((REPO_ROOT / dvc_file).read_text())
    bodies = {name: stage.get("do", stage) for name, stage in pipeline["stages"].items()}
    return {name: body for name, body in bodies.items() if "python pipelines/" in body["cmd"]}


def configure_args(dvc_file: str) -> dict[str, str]:
    """The `key=value` arguments of a dvc.yaml's configure stage."""
    return dict(arg.split("=", 1) for arg in dvc_stages(dvc_file)["configure"]["cmd"].split() if "=" in arg)
