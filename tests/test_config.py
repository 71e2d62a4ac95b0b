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
@pytest.mark.fast
def test_every_group_option_composes_and_validates(make_config, override, mnist_root):
    recipe = override.startswith("experiment=ref_")  # a reference recipe, at every budget
    cfg = make_config([override], config_name="reference" if recipe else "train")
    if cfg.data.name == "mnist":  # MNIST's: the vendored files, wherever the tests run from
        cfg.data.path = str(mnist_root)
    typed = validate(cfg)
    for budget in cfg.budgets if recipe else ():
        cfg.budget = budget
        validate(cfg)
    image_shape = (1, 28, 28) if cfg.data.name == "mnist" else (1, 8, 8)
    model = build_model(typed.model, typed.net, image_shape)
    assert model.cfg.latent_dim == cfg.model.latent_dim


@pytest.mark.parametrize(
    "override",
    ["model.latnt_dim=3", "data.batchsize=8", "trainer.max_epoch=2"],
)
@pytest.mark.fast
def test_unknown_key_is_rejected(make_config, override):
    with pytest.raises(ConfigCompositionException, match=override.split("=")[0].split(".")[1]):
        make_config([override])


@pytest.mark.parametrize("override", ["+model.latnt_dim=3", "+data.batchsize=8", "+net.width=3", "+trainer.foo=1"])
@pytest.mark.fast
def test_appended_unknown_key_is_rejected(make_config, override):
    with pytest.raises(ConfigError, match=override.split("=")[0].split(".")[1]):
        validate(make_config([override]))


@pytest.mark.parametrize(
    "override",
    ["model.latent_dim=abc", "data.batch_size=1.5", "model.lr=fast", "model.likelihood=poisson", "model.corruption=blur", "data.binarize=sometimes", "logger.name=wandb"],
)
@pytest.mark.fast
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
        ("data.train_classes=[-1]", "data.train_classes"),
        ("net.hidden_dims=[0]", "net.hidden_dims"),
        ("net=conv net.channels=[0,4]", "net.channels"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
    ],
)
@pytest.mark.fast
def test_invalid_value_names_the_key(make_config, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(make_config(override.split()))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.optimizer.lr=0.1", "model.optimizer.lr: the optimizer takes model.lr (0.004); set that instead"),
        ("model.optimizer.eps=-1", "model.optimizer: Invalid epsilon value: -1"),  # the optimizer's own check
        ("model.optimizer._target_=torch.optim.Adamm", "model.optimizer: Error locating target 'torch.optim.Adamm'"),
        ("+model.optimizer.momentum=0.9", "model.optimizer: Adam.__init__() got an unexpected keyword argument 'momentum'"),
        ("model.scheduler._target_=torch.optim.lr_scheduler.StepLR", "model.scheduler: StepLR.__init__() got an unexpected keyword argument 'schedule'"),
    ],
)
@pytest.mark.fast
def test_optimizer_and_scheduler_are_built_once_while_validating(make_config, override, message):
    """A bad optimizer or scheduler node fails in one line naming it, before any data or training."""
    with pytest.raises(ConfigError) as raised:
        validate(make_config([override]))
    assert str(raised.value).startswith(message), raised.value


@pytest.mark.parametrize(
    ("script", "override", "named"),
    [
        pytest.param("train", "model.latnt_dim=3", "latnt_dim", marks=pytest.mark.fast),  # typo; the CLI case of `make test-fast`
        ("train", "model.lr=abc", "model.lr=abc"),  # wrong type
        ("train", "model.latent_dim=-2", "model.latent_dim"),  # bad value
        ("train", "model=foo", "Could not find 'model/foo' Available options in 'model': ae, "),  # bad choice of a config group
        ("train", "net=foo", "Available options in 'net': conv, mlp"),
        ("train", "model.likelihood=poisson", "poisson"),  # bad choice of an Enum field
        ("train", "+model.foo=1", "foo"),  # appended unknown key
        pytest.param("train", "trainer.precision=fp8", "trainer.precision: unknown precision 'fp8'", marks=pytest.mark.fast),
        ("train", "trainer.progress=loud", "loud"),
        ("anomaly", "model.latnt_dim=3", "latnt_dim"),
        ("anomaly", "roc_points=abc", "roc_points=abc"),
        ("anomaly", "normal_classes=[12]", "normal_classes"),
        ("anomaly", "model.corruption=blur", "blur"),
        ("evaluate", "figures.n_image=3", "n_image"),
        ("evaluate", "likelihood.batch_size=many", "likelihood.batch_size=many"),
        ("evaluate", "likelihood.samples=-1", "likelihood.samples"),
        ("evaluate", "data=foo", "Available options in 'data': " + ", ".join(sorted(path.stem for path in (CONF_DIR / "data").glob("*.yaml")))),
        ("probe", "logreg.c=1", "'c'"),
        ("probe", "logreg.C=abc", "logreg.C=abc"),
        ("probe", "repeats=0", "repeats"),
        ("probe", "baselines=[pixels,hog]", "hog"),  # an Enum in a list
    ],
)
def test_cli_bad_override_is_one_line_and_exit_2(tmp_path, script, override, named):
    result = subprocess.run(
        [sys.executable, f"pipelines/{script}.py", override, "logger=none", f"output_dir={tmp_path}/out", f"hydra.run.dir={tmp_path}/h"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "out").exists()  # no work started
