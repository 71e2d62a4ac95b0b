"""`params.yaml` as the study reads it: each training's keys and where they were written, and a
bad budget or list of one-class models refused in one line that names the key."""

import pytest
import yaml

from aevae.config import study
from aevae.errors import ConfigError

from conftest import REPO_ROOT

pytestmark = pytest.mark.fast


@pytest.fixture
def params_file(tmp_path):
    """A copy of the project's params.yaml, and a way to edit it: edit(lambda params: ...)."""
    target = tmp_path / "params.yaml"
    target.write_text((REPO_ROOT / "params.yaml").read_text())

    def edit(change):
        params = yaml.safe_load(target.read_text())
        change(params)
        target.write_text(yaml.safe_dump(params, sort_keys=False))
        return target

    return edit


def test_a_models_epochs_come_from_its_data_sets_budget_unless_train_or_its_entry_set_them(params_file):
    def change(params):
        params["data"]["name"] = "digits"
        params["epochs"]["digits"] = {"train": 7, "anomaly": 3}
        params["models"]["vae"]["max_epochs"] = 9

    params = study.load(params_file(change))
    assert study.entry_keys(params, "ae")["max_epochs"] == ("epochs.digits.train", 7)
    assert study.entry_keys(params, "vae")["max_epochs"] == ("models.vae.max_epochs", 9)
    params.train["max_epochs"] = 5
    assert study.entry_keys(params, "ae")["max_epochs"] == ("train.max_epochs", 5)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["epochs"].pop(p["data"]["name"]), "params.yaml epochs: no budget for data set mnist; add `epochs.mnist:"),
        (lambda p: p["epochs"].update(mnsit=p["epochs"]["mnist"]), "params.yaml epochs.mnsit: not a data set (did you mean mnist?)"),
        (lambda p: p["epochs"]["mnist"].update(anomly=3), "params.yaml epochs.mnist.anomly"),
        (lambda p: p["epochs"]["mnist"].update(train="many"), "params.yaml epochs.mnist.train"),
        (lambda p: p["anomaly"].update(models=["ae", "vea"]), "params.yaml anomaly.models: vea is not a key of models (did you mean vae?)"),
    ],
    ids=["no budget for the data set", "unknown data set", "unknown key", "wrong type", "one-class model not in models"],
)
def test_a_bad_budget_or_one_class_list_is_one_line_naming_its_key(params_file, change, message):
    with pytest.raises(ConfigError) as error:
        study.load(params_file(change))
    assert str(error.value).startswith(message) and "\n" not in str(error.value), error.value


SHADOWED = "params.yaml train.latent_dim: every model sets its own (models.<name>.latent_dim), so it reaches no training; remove it from train or from the models' entries"


def test_a_train_key_reaches_each_model_whose_entry_does_not_set_it_and_is_refused_when_none_is_left(params_file):
    def shared(params):
        params["train"]["latent_dim"] = 8
        params["models"]["vae"]["latent_dim"] = 32

    params = study.load(params_file(shared))
    assert study.entry_keys(params, "ae")["latent_dim"] == ("train.latent_dim", 8)
    assert study.entry_keys(params, "vae")["latent_dim"] == ("models.vae.latent_dim", 32)

    def shadowed(params):
        shared(params)
        for entry in params["models"].values():
            entry["latent_dim"] = 32

    with pytest.raises(ConfigError) as error:
        study.load(params_file(shadowed))
    assert str(error.value) == SHADOWED
