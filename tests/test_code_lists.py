"""Every stage's code list, as its study's configure stage writes it, holds what the stage reads:
a missing file there is an edit that DVC would not re-run (the dvc.yaml side:
tests/test_structure.py). Composes every stage's config: not in the fast lane."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from aevae.config import register_configs, study
from aevae.config.studies import DEFAULT_STUDY
from aevae.stages.configure import other_study_overrides, stage_overrides, stages_code
from structure import CONF, DVC_FILES, REPO_ROOT, SRC, configure_args, import_closure


def hydra_reads(config_name: str, overrides: list[str]) -> set[Path]:
    """What Hydra reads to compose `config_name` with `overrides` (its defaults list): the conf/
    files, and the module of each model kind whose schema it loads (`model/<kind>_schema`)."""
    loader = GlobalHydra.instance().config_loader()
    paths = [default.config_path for default in loader.compute_defaults_list(config_name, overrides, RunMode.RUN).defaults]
    kinds = {SRC / "aevae" / "models" / f"{path.removeprefix('model/').removesuffix('_schema')}.py" for path in paths if path.startswith("model/") and path.endswith("_schema")}
    return {CONF / f"{path}.yaml" for path in paths if (CONF / f"{path}.yaml").is_file()} | kinds


@pytest.mark.parametrize("dvc_file", DVC_FILES)
def test_each_stage_lists_every_file_it_imports_and_every_config_hydra_composes(dvc_file, tmp_path):
    """The code list that a study's configure stage writes for each stage holds its entry point,
    that file's import closure, and what Hydra's defaults list for its overrides reads: every
    config file and the module of each model kind whose schema it loads (read by Hydra here, not
    by aevae.run.code_deps). What a stage imports while it runs: tests/test_pipeline.py."""
    args = configure_args(dvc_file)
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        HydraConfig.instance().set_config(compose("configure", return_hydra_config=True, overrides=[f"hydra.runtime.output_dir={tmp_path}"]))
        if args.get("study", DEFAULT_STUDY) == DEFAULT_STUDY:
            stages = stage_overrides(study.load(REPO_ROOT / args["params"]), args["models_dir"])
        else:
            stages = other_study_overrides(args["study"], str(REPO_ROOT / args["params"]), args["models_dir"])
        code = stages_code(REPO_ROOT, stages)
        missing = {}
        for stage, (config_name, overrides, _) in stages.items():
            entry_point = REPO_ROOT / "pipelines" / f"{config_name}.py"
            needed = {entry_point} | import_closure(entry_point) | hydra_reads(config_name, overrides)
            lacks = sorted(str(path.relative_to(REPO_ROOT)) for path in needed - {REPO_ROOT / path for path in code[stage]})
            if lacks:
                missing[stage] = lacks
    assert not missing, f"{dvc_file}: the code lists lack {missing}"
