"""The configure stage names the `params.yaml` key a bad value was written at, for every numeric
key of every stage (not the entry point's key it becomes: `evaluate.iw_samples`, not
`likelihood.samples`)."""

import copy
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from aevae.config import studies, study
from aevae.errors import ConfigError
from aevae.stages.configure import stage_overrides
from conftest import CONF_DIR, REPO_ROOT, set_params

ONE_MODEL = {"models": {"vae": {"model": "vae", "net": "mlp", "latent_dim": 4}}, "anomaly.models": ["vae"]}  # fewer configs to compose
BAD_VALUES = [
    ("seed", -1),
    ("data.split_seed", 2**32),
    ("pca_components", -3),
    ("epochs.mnist.train", 0),
    ("epochs.mnist.anomaly", 0),
    ("train.batch_size", 0),
    ("models.vae.latent_dim", 0),
    ("models.vae.lr", -1.0),
    ("classifier.max_epochs", 0),
    ("evaluate.iw_samples", 0),
    ("anomaly.normal_classes", [-1]),
    ("anomaly.iw_samples", -5),
    ("probe.labels_per_class", [0]),
    ("probe.repeats", 0),
]


@pytest.mark.fast
@pytest.mark.parametrize("key, value", BAD_VALUES, ids=[key for key, _ in BAD_VALUES])
def test_a_bad_number_in_params_names_its_params_key(tmp_path, key, value):
    params = tmp_path / "params.yaml"
    params.write_text((REPO_ROOT / "params.yaml").read_text())
    set_params(params, {**copy.deepcopy(ONE_MODEL), key: value})
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        HydraConfig.instance().set_config(compose("configure", return_hydra_config=True, overrides=[f"hydra.runtime.output_dir={tmp_path}"]))
        with pytest.raises(ConfigError) as error:
            stage_overrides(study.load(params), str(tmp_path / "models"))
    assert str(error.value).startswith(f"params.yaml {key}: "), error.value


REFUSED = [
    ({"evaluate.iw_samples": 0}, "error: params.yaml evaluate.iw_samples: must be >= 1, got 0"),
    (
        {"train.lr": 2e-3, "models": {"vae": {"model": "vae", "lr": 1e-3}}, "anomaly.models": ["vae"]},
        "error: params.yaml train.lr: every model sets its own (models.<name>.lr), so it reaches no training; remove it from train or from the models' entries",
    ),
    ({"train.lrr": 2e-3}, "error: params.yaml train.lrr: not a key of ae's model, net, trainer or data config (did you mean lr?)"),
]


@pytest.mark.parametrize("values, message", REFUSED, ids=["bad value", "train key every model overrides", "train key of no config"])
def test_the_configure_entry_point_refuses_a_bad_params_key_in_one_line_before_writing(tmp_path, values, message):
    params = tmp_path / "params.yaml"
    params.write_text((REPO_ROOT / "params.yaml").read_text())
    set_params(params, values)
    result = subprocess.run(
        [sys.executable, "pipelines/configure.py", f"params={params}", f"models_dir={tmp_path / 'models'}", f"output_dir={tmp_path / 'overrides'}", f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip() == message, result.stderr[-3000:]
    assert not (tmp_path / "overrides").exists()


@pytest.mark.fast
@pytest.mark.parametrize(
    "name, change, message",
    [
        ("sprites", {"modelz": {}}, "modelz: Key 'modelz' not in 'SpritesParams'"),
        ("sprites", {"models.vae_seed0.beta": "high"}, "models.vae_seed0.beta: Value 'high' of type 'str' could not be converted to Float"),
        ("reference", {"recipes.m2.experment": "ref_m2"}, "recipes.m2.experment: Key 'experment' not in 'Recipe'"),
    ],
    ids=["unknown key", "wrong type", "recipe typo"],
)
def test_a_study_params_file_with_a_bad_key_is_one_line_naming_it(tmp_path, name, change, message):
    params = tmp_path / "params.yaml"
    params.write_text((REPO_ROOT / "studies" / name / "params.yaml").read_text())
    set_params(params, change)
    with pytest.raises(ConfigError) as error:
        studies.load(name, params)
    assert str(error.value).startswith(f"{params} {message}") and "\n" not in str(error.value), error.value


@pytest.mark.fast
def test_a_recipe_is_one_entry_of_the_reference_params(tmp_path):
    """A recipe listed in studies/reference/params.yaml gets its stage and its row of the report."""
    params = tmp_path / "params.yaml"
    params.write_text((REPO_ROOT / "studies/reference/params.yaml").read_text())
    set_params(params, {"recipes.again": {"experiment": "ref_iwae_vae", "model": "vae"}})
    stages = studies.load("reference", params).stages("reports/reference")
    assert stages["recipe/again"] == ("reference", [("experiment", "recipes.again.experiment", "ref_iwae_vae"), ("model", "recipes.again.model", "vae"), ("budget", "budget", "cpu"), ("trainer", "trainer", "cpu")])
    assert stages["report"][1][0][2][-1] == "reports/reference/again"


@pytest.mark.fast
def test_each_stage_is_composed_once_into_the_config_its_overrides_compose(tmp_path):
    """A training's config is composed once, with its options chosen, and the entry's keys then
    set on it; that equals what its entry point composes from the overrides written, for values of
    every kind (a float written `4e-3`, a list, a string, a null; a `train:` key and entry keys)."""
    params = tmp_path / "params.yaml"
    params.write_text((REPO_ROOT / "params.yaml").read_text())
    models = {"vae": {"model": "vae", "net": "conv", "latent_dim": 4, "hidden_dim": 64}, "dae": {"model": "dae", "corruption": "mask", "lr": "4e-3"}}
    set_params(params, {"models": models, "train.lr_schedule": "constant", "anomaly.models": ["vae"], "anomaly.normal_classes": [3], "pca_components": None})
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        HydraConfig.instance().set_config(compose("configure", return_hydra_config=True, overrides=[f"hydra.runtime.output_dir={tmp_path}"]))
        stages = stage_overrides(study.load(params), str(tmp_path / "models"))
        for stage, (name, overrides, cfg) in stages.items():
            expected = compose(name, overrides=overrides, return_hydra_config=True)
            assert cfg.hydra.runtime.choices == expected.hydra.runtime.choices, stage
            assert OmegaConf.to_yaml(stage_part(cfg)) == OmegaConf.to_yaml(stage_part(expected)), stage
    dae, vae = stages["train/dae"][2], stages["anomaly/vae"][2]
    assert (dae.model.lr, dae.model.lr_schedule, dae.model.corruption) == (4e-3, "constant", "mask")
    assert (vae.net.hidden_dim, vae.model.latent_dim, list(vae.normal_classes), vae.pca_components) == (64, 4, [3], None)


def stage_part(cfg: DictConfig) -> DictConfig:
    """`cfg` less Hydra's node."""
    cfg = cfg.copy()
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
