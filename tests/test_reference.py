"""The reference study: the IS estimator on the recipe's VAE, one-class AUROC against
scikit-learn on the saved scores, the report's verdicts, and the whole study through DVC at the
smoke budget."""

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from aevae.config import validate
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.errors import ConfigError
from aevae.evaluation.likelihood import likelihood_bounds
from aevae.io import load_tensors
from aevae.models import build_model
from aevae.models.losses import gaussian_kl
from aevae.reporting.reference_table import RecipeResult, samples_table, verdict
from aevae.stages.reference import across_seeds, run as run_reference
from conftest import REPO_ROOT, copy_project, run_command, set_params, study_env

SMOKE = ["budget=smoke", "data=digits"]


@pytest.fixture
def recipe_model(make_config):
    """The ref_iwae_vae recipe's VAE (784-200-200-50, tanh, Bernoulli) and binarized MNIST test images."""
    cfg = make_config(["experiment=ref_iwae_vae", "budget=smoke"], config_name="reference")
    splits = load_or_prepare(cfg.data)
    datamodule = InMemoryDataModule(splits, cfg.data, seed=0)
    datamodule.setup()
    torch.manual_seed(0)
    typed = validate(cfg)
    model = build_model(typed.model, typed.net, splits.image_shape).eval()
    assert [type(m).__name__ for m in model.encoder.net[1]][:4] == ["Linear", "Tanh", "Linear", "Tanh"]
    assert model.cfg.latent_dim == 50 and tuple(model.image_shape) == (1, 28, 28)
    return model, datamodule.tensors["test"][0][:64]


@torch.no_grad()
def test_one_sample_bound_is_the_elbo_in_expectation(recipe_model):
    model, images = recipe_model
    draws = 400
    generator = torch.Generator().manual_seed(0)
    k1 = torch.stack([likelihood_bounds(model, images, 1, 64, generator)["log_px"] for _ in range(draws)])
    # the ELBO by the model's own estimator: one decoder sample, the KL in closed form
    mu, logvar = model.encode(images)
    elbo = torch.stack([model.loss_terms(images, images)["elbo"] for _ in range(draws)])
    diff = k1.mean() - elbo.mean()
    standard_error = math.sqrt(k1.mean(1).var() / draws + elbo.mean(1).var() / draws)
    assert abs(float(diff)) < 4 * standard_error + 1e-3, (float(diff), standard_error)
    assert float(gaussian_kl(mu, logvar).mean()) > 0


@torch.no_grad()
def test_the_bound_tightens_with_k(recipe_model):
    model, images = recipe_model
    generator = torch.Generator().manual_seed(0)
    bounds = {k: likelihood_bounds(model, images, k, 16, generator) for k in (1, 10, 100, 1000)}
    log_px = [float(bounds[k]["log_px"].mean()) for k in (1, 10, 100, 1000)]
    assert log_px == sorted(log_px) and log_px[-1] - log_px[0] > 1.0, log_px
    # the k-sample ELBO estimate does not tighten: it stays within noise of the k=1 bound
    assert abs(float(bounds[1000]["elbo"].mean()) - log_px[0]) < 0.1 * (log_px[-1] - log_px[0])


def test_one_class_auroc_matches_scikit_learn_on_the_saved_scores(make_config):
    cfg = make_config(["experiment=ref_one_class", "model=vae", *SMOKE], config_name="reference")
    metrics = run_reference(cfg)
    saved = load_tensors(f"{cfg.train_dir}/seed_0/classes/scores.pt")
    assert sorted(p.name for p in Path(cfg.output_dir).iterdir()) == ["metrics.json", "protocol.json", "runs"]
    labels = saved["labels"].numpy()
    for method, name in (("vae", "model"), ("vae_iwae", "model_iwae"), ("pca32", "pca"), ("vae_latent_lof", "model_latent_lof"), ("pixels_lof", "pixels_lof")):
        per_class = [roc_auc_score(labels != c, saved[f"{method}/class_{c}"].numpy()) for c in cfg.normal_classes]
        assert metrics[f"auroc/{name}/seed_0"] == pytest.approx(sum(per_class) / len(per_class), abs=1e-6)
    protocol = json.loads(Path(cfg.output_dir, "protocol.json").read_text())
    assert protocol["budget"]["name"] == "smoke" and protocol["task"] == "one_class" and protocol["published"]


@pytest.mark.fast
def test_metrics_across_seeds_are_mean_and_sample_std():
    metrics = across_seeds({0: {"acc": 0.8}, 1: {"acc": 0.9}, 2: {"acc": 1.0}})
    assert metrics["acc/mean"] == pytest.approx(0.9) and metrics["acc/std"] == pytest.approx(0.1)
    assert metrics["acc/seed_2"] == 1.0 and across_seeds({5: {"acc": 0.7}})["acc/std"] == 0.0


@pytest.mark.fast
def test_verdict_uses_the_target_and_the_direction():
    assert verdict(87.0, {"value": 86.76, "target": 87.5, "better": "lower"}) == "reached (+0.5)"
    assert verdict(93.45, {"value": 86.76, "target": 87.5, "better": "lower"}) == "missed by 5.95"
    assert verdict(0.90, {"value": 0.975, "target": None, "better": "higher"}) == "missed by 0.075"


@pytest.mark.fast
def test_the_samples_table_sets_the_share_nearest_a_labelled_image_beside_chance():
    names = ("test/accuracy", "gen/accuracy", "gen/nearest_labelled", "gen/nearest_random")
    semi = across_seeds({0: dict(zip(names, (0.9, 0.95, 0.2, 0.002))), 1: dict(zip(names, (0.92, 0.97, 0.18, 0.002)))})
    results = [
        RecipeResult({"recipe": "ref_m2", "model": "ssvae", "budget": {"seeds": [0, 1]}}, semi, []),
        RecipeResult({"recipe": "ref_m1_probe", "model": "vae", "budget": {"seeds": [0]}}, across_seeds({0: {"acc/vae/svm": 0.8}}), []),
    ]
    table = samples_table(results).splitlines()
    assert table[0] == "| recipe | q(y|x) test accuracy | samples classified as asked | samples nearest a labelled image | the same, random same-class sets |"
    assert table[2:] == ["| ref_m2 (ssvae) | 0.91 ± 0.014 (2 seeds) | 0.96 ± 0.014 (2 seeds) | 0.19 ± 0.014 (2 seeds) | 0.002 ± 0 (2 seeds) |"]
    assert samples_table(results[1:]) == ""


def test_an_unknown_budget_is_one_line_before_any_work(tmp_path):
    result = subprocess.run(
        [sys.executable, "pipelines/reference.py", "experiment=ref_m1_probe", "budget=huge", f"hydra.run.dir={tmp_path}", "logger=none"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "budget" in result.stderr and "full, cpu, smoke" in result.stderr


@pytest.mark.parametrize(("overrides", "key"), [(["seeds=[0,0]"], "seeds"), (["experiment=ref_iwae_vae", "likelihood.samples=0"], "likelihood.samples")])
@pytest.mark.fast
def test_a_recipe_rejects_bad_values_by_name(make_config, overrides, key):
    cfg = make_config(["experiment=ref_iwae_vae", "budget=smoke", *overrides], config_name="reference")
    with pytest.raises(ConfigError, match=f"^{key}:"):
        validate(cfg)


def test_the_reference_study_runs_end_to_end_through_dvc(tmp_path):
    """`dvc repro studies/reference/dvc.yaml` at the smoke budget on MNIST: every recipe, the table
    with every published number, one MLflow run holding it, and nothing left to run."""
    repo = tmp_path / "repo"
    copy_project(repo, pipelines=("reference",))
    set_params(repo / "studies/reference/params.yaml", {"budget": "smoke"})
    env = study_env()
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "study"]):
        run_command(args, repo, env)
    run_command(["dvc", "repro", "studies/reference/dvc.yaml"], repo, env)
    report = (repo / "reports/reference.md").read_text()
    for number in ("86.76", "0.897", "0.948", "0.975", "0.882", "0.8803", "0.9667"):
        assert number in report
    for key in ("iwae_vae", "one_class_ae", "one_class_vae", "m1_probe", "m2", "m1m2"):
        protocol = json.loads((repo / f"reports/reference/{key}/protocol.json").read_text())
        assert protocol["budget"]["name"] == "smoke" and protocol["data"] == ("codes" if key == "m1m2" else "mnist")  # M2 of M1+M2 reads M1's codes
        assert f"{protocol['recipe']} ({protocol['model']})" in report
    for recipe, figure in itertools.product(("m2", "m1m2"), ("ssvae_analogies", "ssvae_conditional_samples")):  # the first seed's, in the report
        path = f"reference/{recipe}/figures/seed_0/{figure}.png"
        assert f"({path})" in report and (repo / "reports" / path).stat().st_size > 0
    assert "| ref_m1m2 (ssvae) |" in report.split("## Samples of the class asked for")[1]  # beside its as-asked accuracy
    assert "up to date" in run_command(["dvc", "status", "studies/reference/dvc.yaml"], repo, env).lower()
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    (run,) = client.search_runs(client.get_experiment_by_name("aevae").experiment_id, "tags.`aevae.stage` = 'reference_report'")
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["reference.md"]
    assert run.data.metrics["ref_iwae_vae/vae/test/nll_is"] > 0
