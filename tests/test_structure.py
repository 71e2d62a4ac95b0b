"""The shape of the code stays as designed: no import cycles, no upward imports, no evaluation
module that loads data, no private Lightning API, thin entry points, each stage's schema found by
its name, complete DVC dependencies (every stage's code listed by its study's configure stage),
exactly pinned stack packages."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from structure import CODE, DVC_FILES, REPO_ROOT, SRC, config_name, configure_args, dvc_stages, import_graph, module_name

pytestmark = pytest.mark.fast  # no training: part of `make test-fast`

# Lower layers never import higher ones (a module may import its own layer or any lower one).
LAYERS = {
    "aevae.errors": 0,
    "aevae.io": 0,
    "aevae.workspace": 0,
    "aevae.run.logs": 0,
    "aevae.run.code_deps": 0,
    "aevae.run.ownership": 0,
    "aevae.run.ranks": 0,
    "aevae.nets": 1,
    "aevae.data": 1,
    "aevae.records.tracking": 1,
    "aevae.records.timings": 1,
    "aevae.reporting.plots": 1,
    "aevae.run.devices": 1,
    "aevae.run.resume": 1,
    "aevae.run.checkpoints": 1,
    "aevae.models": 2,
    "aevae.run.sweeps": 2,
    "aevae.config": 3,
    "aevae.config.study": 3,
    "aevae.config.studies": 3,
    "aevae.evaluation": 3,
    "aevae.run.callbacks": 3,
    "aevae.run.progress": 3,
    "aevae.reporting.report": 3,
    "aevae.reporting.reference_table": 3,
    "aevae.records.mlflow_model": 3,
    "aevae.records.mlflow_model_code": 3,
    "aevae.stages": 4,
    "aevae.entry": 5,
    # the folders' own __init__ modules (after their modules: the first matching prefix wins)
    "aevae.run": 0,
    "aevae.records": 0,
    "aevae.reporting": 0,
}
STACK = ["torch", "lightning", "torchmetrics", "hydra-core", "omegaconf", "hydra-joblib-launcher", "hydra-optuna-sweeper", "mlflow", "dvc", "scikit-learn", "matplotlib", "pandas"]
ENTRY_POINTS = sorted((REPO_ROOT / "pipelines").glob("*.py"))


def layer(module: str) -> int:
    for prefix, rank in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return rank
    if module == "aevae":
        return 0
    raise AssertionError(f"{module} has no layer in LAYERS: add it")


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in graph.get(module, ()):
            if state.get(imported) == "open":
                raise AssertionError("import cycle: " + " -> ".join([*path, module, imported]))
            if imported not in state:
                visit(imported, [*path, module])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [])


def test_no_upward_imports():
    upward = [
        f"{module} (layer {layer(module)}) imports {imported} (layer {layer(imported)})"
        for module, imports in import_graph().items()
        for imported in imports
        if layer(imported) > layer(module)
    ]
    assert not upward, "\n".join(upward)


# importer -> imported: packages of one layer that must not import each other
FORBIDDEN = {("aevae.evaluation", "aevae.data"): "evaluation takes tensors and arrays; the stage loads the data"}


def test_no_forbidden_imports():
    found = [
        f"{module} imports {imported}: {why}"
        for module, imports in import_graph().items()
        for imported in imports
        for (importer, banned), why in FORBIDDEN.items()
        if module.startswith(importer) and (imported == banned or imported.startswith(banned + "."))
    ]
    assert not found, "\n".join(found)


def test_no_private_lightning_api_in_src():
    private = []
    for path in sorted((SRC / "aevae").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("lightning", "pytorch_lightning"):
                names = [*node.module.split("."), *(alias.name for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [part for alias in node.names if alias.name.split(".")[0] in ("lightning", "pytorch_lightning") for part in alias.name.split(".")]
            else:
                continue
            if any(name.startswith("_") for name in names):
                private.append(f"{module_name(path)}:{node.lineno}")
    assert not private, f"private Lightning API imported at {private}"


@pytest.mark.parametrize("entry_point", ENTRY_POINTS, ids=lambda p: p.name)
def test_entry_points_hold_no_logic(entry_point):
    """Docstring, imports and `if __name__ == "__main__": main(<stage>.run, "<config>")` only."""
    body = ast.parse(entry_point.read_text()).body
    kinds = [type(node).__name__ for node in body]
    assert kinds == ["Expr", "ImportFrom", "ImportFrom", "If"], kinds
    assert len(body[-1].body) == 1 and config_name(entry_point) == entry_point.stem


@pytest.mark.parametrize("entry_point", ENTRY_POINTS, ids=lambda p: p.name)
def test_each_stage_schema_is_found_by_the_stage_name(entry_point):
    """`aevae.stages.schema(<stage>)`: the dataclass that `stages/<stage>.py`'s `run` takes, defined
    there and registered as `<stage>_schema`, which `conf/<stage>.yaml` composes."""
    from dataclasses import is_dataclass

    from aevae.config import schema_name
    from aevae.stages import schema

    stage = entry_point.stem
    found = schema(stage)
    assert is_dataclass(found) and found.__module__ == f"aevae.stages.{stage}", found
    assert schema_name(found) == f"{stage}_schema" in yaml.safe_load((REPO_ROOT / "conf" / f"{stage}.yaml").read_text())["defaults"]


@pytest.mark.parametrize("name", [f"{file}:{stage}" for file in DVC_FILES for stage in dvc_stages(file)])
def test_a_dvc_stage_depends_on_its_code_through_its_configure_stage(name):
    """`configure` depends on all the code; every other stage reads its overrides file
    (`@<file>`, written by configure with the md5s of the code it runs), depends on that file
    and names no code path itself: no hand-written dependency list (the lists themselves:
    tests/test_code_lists.py)."""
    dvc_file, stage_name = name.split(":")
    stage = dvc_stages(dvc_file)[stage_name]
    deps = [dep.split("/")[0] for dep in stage["deps"]]
    if stage_name == "configure":
        assert set(CODE) <= set(stage["deps"]), stage["deps"]
        return
    overrides = re.search(r" @(\S+)", stage["cmd"])
    assert overrides, f"{name}: reads no overrides file (`@<configure's output_dir>/<stage>.txt`)"
    assert overrides.group(1).startswith(configure_args(dvc_file)["output_dir"] + "/") and overrides.group(1) in stage["deps"], stage
    assert not set(deps) & set(CODE), f"{name}: code in deps {stage['deps']}; its overrides file lists it"


def test_the_code_a_config_names_by_target_is_part_of_the_stages_code():
    from aevae.run.code_deps import stage_code

    code = stage_code(REPO_ROOT, "anomaly", {"model": "ae"})  # nothing imports complexity.py: conf/anomaly_methods.yaml names it
    assert Path("src/aevae/evaluation/complexity.py") in code and Path("conf/anomaly_methods.yaml") in code


def test_stack_packages_are_pinned_exactly():
    pins = dict(
        line.split("==", 1)
        for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    missing = [package for package in STACK if package not in {name.lower() for name in pins}]
    assert not missing, f"constraints.txt does not pin {missing} exactly"
