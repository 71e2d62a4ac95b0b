"""Every config option composes; typos, wrong types and bad values are rejected before any work."""

import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from aevae.config import validate
from aevae.errors import ConfigError
from aevae.models import build_model
from conftest import CONF_DIR, REPO_ROOT

GROUP_OPTIONS = [
    f"{group}={path.stem}"
    for group in ("data", "model", "net", "trainer", "logger", "experiment")
    for path in sorted((CONF_DIR / group).glob("*.yaml"))
    if path.stem != "default"
]


@pytest.mark.parametrize("override", GROUP_OPTIONS)
def test_every_group_option_composes_and_validates(make_config, override, mnist_root):
    cfg = make_config([override, f"data.root={mnist_root}"])
    validate(cfg)
    image_shape = (1, 28, 28) if cfg.data.name == "mnist" else (1, 8, 8)
    model = build_model(dict(cfg.model), dict(cfg.net), image_shape)
    assert model.cfg.latent_dim == cfg.model.latent_dim


@pytest.mark.parametrize(
    "override",
    ["model.latnt_dim=3", "data.batchsize=8", "trainer.max_epoch=2"],
)
def test_unknown_key_is_rejected(make_config, override):
    with pytest.raises(ConfigCompositionException, match=override.split("=")[0].split(".")[1]):
        make_config([override])


@pytest.mark.parametrize("override", ["+model.latnt_dim=3", "+data.batchsize=8", "+net.width=3", "+trainer.foo=1"])
def test_appended_unknown_key_is_rejected(make_config, override):
    with pytest.raises(ConfigError, match=override.split("=")[0].split(".")[1]):
        validate(make_config([override]))


@pytest.mark.parametrize(
    "override",
    ["model.latent_dim=abc", "data.batch_size=1.5", "model.lr=fast", "model.likelihood=poisson", "model.corruption=blur", "data.binarize=sometimes", "logger.name=wandb"],
)
def test_wrong_type_or_unknown_choice_is_rejected_while_composing(make_config, override):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        make_config([override])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.latent_dim=0", "model.latent_dim"),
        ("model.lr=-0.1", "model.lr"),
        ("model.beta=-1", "model.beta"),
        ("data.batch_size=-8", "data.batch_size"),
        ("data.val_fraction=1.5", "data.val_fraction"),
        ("data.train_classes=[11]", "data.train_classes"),
        ("net.hidden_dims=[0]", "net.hidden_dims"),
        ("net=conv net.channels=[0,4]", "net.channels"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
    ],
)
def test_invalid_value_names_the_key(make_config, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(make_config(override.split()))


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("model.latnt_dim=3", "latnt_dim"),  # typo
        ("model.lr=abc", "model.lr=abc"),  # wrong type
        ("model.latent_dim=-2", "model.latent_dim"),  # bad value
        ("model=foo", "model/foo"),  # bad choice of a config group
        ("model.likelihood=poisson", "poisson"),  # bad choice of an Enum field
        ("+model.foo=1", "foo"),  # appended unknown key
    ],
)
def test_cli_bad_override_is_one_line_and_exit_2(tmp_path, override, named):
    result = subprocess.run(
        [sys.executable, "pipelines/train.py", override, "logger=none", f"output_dir={tmp_path}", f"hydra.run.dir={tmp_path}/h"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.stderr
    assert not (tmp_path / "checkpoints").exists()
