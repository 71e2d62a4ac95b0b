"""The disentangle stage on sprites: scores per model and per group of seeds, traversals named by
factor, the report, its MLflow runs, the same bytes on a second run; bad configs in one line."""

import json
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import OmegaConf, open_dict

from aevae.data import prepare_splits, save_splits
from aevae.data.sprites import FACTOR_NAMES
from aevae.errors import ConfigError
from aevae.evaluation.disentanglement import SCORE_NAMES
from aevae.stages.disentangle import run as disentangle
from aevae.stages.train import run as train
from conftest import CONF_DIR, REPO_ROOT, TINY

FAST = ["scores.dci_estimators=5", "scores.factor_vae_train_votes=200", "scores.factor_vae_eval_votes=100", "traversal_steps=3"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("sprites")
    cfg = OmegaConf.load(CONF_DIR / "data" / "sprites.yaml")
    del cfg["defaults"]
    return save_splits(prepare_splits(cfg), root / "sprites.pt")


@pytest.fixture(scope="module")
def checkpoints(prepared, tmp_path_factory):
    """Tiny VAEs, two seeds at beta 1 and one at beta 4: run name -> best checkpoint."""
    root = tmp_path_factory.mktemp("models")
    runs = {"vae_seed0": ("vae", 1, 0), "vae_seed1": ("vae", 1, 1), "beta4_seed0": ("beta_vae", 4, 0)}
    for name, (model, beta, seed) in runs.items():
        overrides = [*TINY, f"model={model}", f"model.beta={beta}", f"seed={seed}", "data=sprites", f"data.prepared={prepared}", "logger=none"]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
        with open_dict(cfg):
            cfg.output_dir = str(root / name)
        train(cfg)
    return {name: root / name / "checkpoints" / "best.ckpt" for name in runs}


def test_scores_groups_traversals_report_and_runs(make_config, prepared, checkpoints, tracking_uri, tmp_path):
    models = [f"+models.{name}={path}" for name, path in checkpoints.items()]
    cfg = make_config([f"data.prepared={prepared}", *models, *FAST, f"report={tmp_path}/sprites.md"], config_name="disentangle")
    metrics = disentangle(cfg)

    out = tmp_path / "out"
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)
    for name in checkpoints:
        assert all(0.0 <= metrics[f"{name}/{score}"] <= 1.0 for score in SCORE_NAMES)
        assert {f"{name}/mig/{factor}" for factor in FACTOR_NAMES} <= set(metrics)
        assert (out / "figures" / f"{name}_traversals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    seeds = [metrics[f"vae_seed{s}/mig"] for s in (0, 1)]
    assert metrics["vae_beta1/mig/mean"] == pytest.approx(sum(seeds) / 2)
    assert metrics["beta_vae_beta4/mig/std"] == 0.0 and "beta_vae_beta4/elbo/mean" in metrics

    report = (tmp_path / "sprites.md").read_text()
    assert "| vae | 1 | 2 |" in report and "| beta_vae | 4 | 1 |" in report  # one row per beta, runs counted
    assert "](out/figures/vae_seed0_traversals.png)" in report  # linked relative to the report
    assert "Locatello et al. (2019)" in report
    rows = (out / "dimensions.csv").read_text().splitlines()
    assert rows[0].startswith("model,dim,mean_variance,mi/shape") and len(rows) == 1 + 3 * 4  # TINY: model.latent_dim=4

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("aevae").experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["disentangle", *sorted(f"disentangle/{name}" for name in checkpoints)]
    stage_run = next(run for run in runs if run.info.run_name == "disentangle")
    assert stage_run.data.metrics == pytest.approx(metrics)

    first = (out / "metrics.json").read_bytes(), (tmp_path / "sprites.md").read_bytes()
    cfg.logger.name = "none"
    disentangle(cfg)
    assert ((out / "metrics.json").read_bytes(), (tmp_path / "sprites.md").read_bytes()) == first


@pytest.mark.parametrize(
    ("override", "key"),
    [("data=digits", "data.name"), ("scores.mig_bins=0", "scores.mig_bins"), ("scores.dci_train_fraction=1", "scores.dci_train_fraction"), ("published.0.metric=sap", "published")],
)
@pytest.mark.fast
def test_invalid_value_names_the_key(make_config, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):  # before the checkpoint is looked for
        disentangle(make_config(["+models.x=x.ckpt", override], config_name="disentangle"))


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "pipelines/disentangle.py", "+models.x=x.ckpt", "data=digits", "logger=none", f"output_dir={tmp_path}/out", f"hydra.run.dir={tmp_path}/h"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data.name: "), result.stderr
    assert not (tmp_path / "out").exists()
