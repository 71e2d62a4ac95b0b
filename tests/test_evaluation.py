"""Evaluation: reconstruction metrics, the IWAE likelihood estimate, figures, the evaluate stage."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import open_dict

from aevae.config import validate
from aevae.data import load_or_prepare
from aevae.errors import ConfigError, DataError
from aevae.stages.evaluate import run as evaluate, split_images
from aevae.evaluation.latent import interpolate, project_2d, traverse
from aevae.evaluation.latent_stats import active_units, kl_per_dimension, most_active_dimensions
from aevae.evaluation.likelihood import MEANING, likelihood_bounds
from aevae.evaluation.model_figures import save_model_figures
from aevae.evaluation.pca import fit_pca
from aevae.evaluation.reconstruction import reconstruction_metrics
from aevae.models import build_model, load_model
from aevae.models.losses import corrupt, gaussian_kl
from aevae.stages.train import run as train
from conftest import CONF_DIR, REPO_ROOT, TINY, lr_keys
from untrained import IMPROVED, untrained_checkpoint

VAE = {
    "name": "vae", "label": "vae", "latent_dim": 3, "likelihood": "bernoulli", "gaussian_std": 0.1, "corruption": "none",
    "corruption_level": 0.0, **lr_keys(1e-3), "beta": 1.0, "kl_warmup_epochs": 0,
}  # fmt: skip
MLP = {"name": "mlp", "hidden_dims": [16], "activation": "relu"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def compose_config(config_name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A briefly trained denoising AE and a VAE trained on statically binarized digits."""
    root = tmp_path_factory.mktemp("trained")
    recipes = {"dae": ["model=dae"], "vae": ["model=vae", "data.binarize=static"]}
    paths = {}
    for name, overrides in recipes.items():
        brief = ["logger=none", "trainer.limit_train_batches=null", "trainer.max_epochs=2", "model.lr=3e-3"]
        cfg = compose_config("train", [*TINY, *overrides, *brief])
        with open_dict(cfg):
            cfg.output_dir = str(root / name)
        train(cfg)
        paths[name] = root / name / "checkpoints" / "best.ckpt"
    return paths


@pytest.mark.fast
def test_identical_images_reach_the_metric_maxima():
    torch.manual_seed(0)
    target = torch.rand(16, 1, 8, 8).round()
    perfect = reconstruction_metrics(target.clone(), target, batch_size=5)
    assert perfect["mse"] == 0.0 and perfect["bce"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["psnr"] == float("inf")
    assert perfect["ssim"] == pytest.approx(1.0, abs=1e-5)

    noisy = (target + 0.4 * torch.randn_like(target)).clamp(0.01, 0.99)
    degraded = reconstruction_metrics(noisy, target, batch_size=5)
    per_image_mse = (noisy - target).square().flatten(1).mean(1)
    assert degraded["mse"] == pytest.approx(float(per_image_mse.mean()), rel=1e-5)
    assert degraded["psnr"] == pytest.approx(float((-10 * per_image_mse.log10()).mean()), rel=1e-5)
    assert degraded["ssim"] < 0.95 and degraded["bce"] > 1.0


@pytest.mark.fast
def test_importance_estimate_with_one_sample_is_the_elbo_in_expectation():
    torch.manual_seed(0)
    model = build_model(VAE, MLP, (1, 8, 8)).eval()
    x = torch.rand(4, 1, 8, 8).round()
    draws = 4000
    repeated = x.repeat(draws, 1, 1, 1)
    generator = torch.Generator().manual_seed(1)
    bounds = likelihood_bounds(model, repeated, k=1, batch_size=len(repeated), generator=generator)
    torch.testing.assert_close(bounds["log_px"], bounds["elbo"])  # one sample: the two coincide
    with torch.no_grad():
        reference = model.loss_terms(repeated, repeated)["elbo"]  # closed-form KL, independent draws
    estimate, expected = bounds["log_px"].view(draws, 4).mean(0), reference.view(draws, 4).mean(0)
    torch.testing.assert_close(estimate, expected, atol=0.15, rtol=0.0)


def test_importance_estimate_is_seeded_and_tightens_with_more_samples(checkpoints):
    model = load_model(checkpoints["vae"])
    cfg = compose_config("evaluate", ["data.binarize=static"])
    images, _ = split_images(load_or_prepare(cfg.data), cfg.data, seed=0, device="cpu")["test"]

    def mean_log_px(k: int, seed: int = 0) -> float:
        bounds = likelihood_bounds(model, images, k, batch_size=64, generator=torch.Generator().manual_seed(seed))
        assert torch.all(bounds["log_px"] >= bounds["elbo"] - 1e-4)  # Jensen, sample by sample
        return float(bounds["log_px"].mean())

    assert mean_log_px(10) == mean_log_px(10)
    estimates = [mean_log_px(k) for k in (1, 10, 100)]
    assert estimates[0] <= estimates[1] + 0.05 and estimates[1] <= estimates[2] + 0.05
    assert estimates[2] > estimates[0] + 0.1


@pytest.mark.fast
def test_latent_paths():
    z0, z1 = torch.randn(3, 4), torch.randn(3, 4)
    paths = interpolate(z0, z1, steps=5)
    assert paths.shape == (3, 5, 4)
    torch.testing.assert_close(paths[:, 0], z0)
    torch.testing.assert_close(paths[:, -1], z1)
    torch.testing.assert_close(paths[:, 2], (z0 + z1) / 2)

    z, scale = torch.randn(4), torch.tensor([1.0, 2.0, 3.0, 4.0])
    codes = traverse(z, torch.tensor([2, 0]), scale, steps=3, span=1.0)
    assert codes.shape == (2, 3, 4)
    moved = codes - z
    torch.testing.assert_close(moved[0, :, 2], torch.tensor([-3.0, 0.0, 3.0]))
    torch.testing.assert_close(moved[1, :, 0], torch.tensor([-1.0, 0.0, 1.0]))
    assert moved[0, :, [0, 1, 3]].abs().max() == 0 and moved[1, :, 1:].abs().max() == 0

    flat = torch.randn(50, 2)
    assert torch.equal(project_2d(flat, seed=0), flat)
    assert project_2d(torch.randn(50, 6), seed=0).shape == (50, 2)


def test_figures_skip_what_a_model_cannot_do(checkpoints, tmp_path):
    images, labels = torch.rand(40, 1, 8, 8), torch.arange(40) % 10
    cfg = compose_config("evaluate", []).figures
    written = {}
    for name, checkpoint in checkpoints.items():
        paths = save_model_figures(load_model(checkpoint), images, labels, cfg, tmp_path, name, batch_size=16, seed=0)
        written[name] = {path.stem.removeprefix(f"{name}_") for path in paths}
        for path in paths:
            assert path.parent == tmp_path and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000
    common = {"reconstructions", "interpolations", "traversals", "latent_map"}
    assert written["dae"] == common | {"denoising"}
    assert written["vae"] == common | {"samples"}


@pytest.mark.fast
def test_evaluate_rejects_bad_input_before_any_work(tmp_path, tracking_uri):
    missing = tmp_path / "missing.ckpt"
    cfg = compose_config("evaluate", [f"+models.ae={missing}", f"logger.tracking_uri={tracking_uri}"])
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "out")
    with pytest.raises(DataError, match="missing.ckpt: checkpoint not found"):
        evaluate(cfg)
    with pytest.raises(ConfigError, match="likelihood.samples"):
        validate(compose_config("evaluate", ["likelihood.samples=0", "+models.ae=x.ckpt", f"output_dir={tmp_path / 'out'}"]))
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_evaluate_entry_point_writes_metrics_figures_and_logs_to_mlflow(checkpoints, tmp_path, tracking_uri):
    out = tmp_path / "eval"
    overrides = [f"+models.ae={checkpoints['dae']}", f"+models.vae={checkpoints['vae']}"]
    settings = ["likelihood.samples=20", "figures.traversal_dims=3"]
    overrides += settings
    result = subprocess.run(
        [sys.executable, "pipelines/evaluate.py", *overrides, f"output_dir={out}", f"logger.tracking_uri={tracking_uri}", f"hydra.run.dir={tmp_path}/hydra"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    protocol = json.loads((out / "protocol.json").read_text())
    quality = {f"test/{m}" for m in ("mse", "bce", "psnr", "ssim")}
    denoising = {f"denoise/{kind}/{m}" for kind in ("gaussian", "mask") for m in ("psnr", "ssim")}
    likelihood = {"test/elbo", "test/nll_iwae", "latent/kl", "latent/active_units"}
    expected = {"ae": quality | denoising, "vae": quality | denoising | likelihood, "pca": quality | denoising, "corrupted": denoising}
    assert metrics.keys() == {f"{name}/{key}" for name, keys in expected.items() for key in keys}
    assert metrics["vae/test/nll_iwae"] <= -metrics["vae/test/elbo"]
    assert metrics["vae/latent/active_units"] <= 4 and metrics["vae/latent/kl"] > 0
    # corruption costs quality: PCA restores the corrupted inputs worse than the clean ones
    assert metrics["pca/test/psnr"] > max(metrics[f"pca/denoise/{kind}/psnr"] for kind in ("gaussian", "mask"))
    assert 5 < metrics["corrupted/denoise/gaussian/psnr"] < 20
    assert 0 < metrics["ae/test/mse"] and 0 < metrics["ae/test/ssim"] < 1
    # the VAE is evaluated on the binarization it was trained with, as its checkpoint records
    assert protocol["vae"] | {"checkpoint": None} == {
        "checkpoint": None, "dataset": "digits", "binarize": "static", "n_test": 359,
        "likelihood": "bernoulli", "iwae_samples": 20, "units": "nats per image", "meaning": MEANING["bernoulli"],
    }  # fmt: skip
    assert protocol["ae"]["binarize"] == "none"
    assert {p.name for p in (out / "figures").iterdir()} >= {"ae_denoising.png", "vae_samples.png", "vae_latent_map.png"}
    latent_kl = list(csv.DictReader((out / "latent_kl.csv").open()))
    assert [row["dim"] for row in latent_kl] == ["0", "1", "2", "3"] and {row["model"] for row in latent_kl} == {"vae"}
    assert sum(float(row["kl"]) for row in latent_kl) == pytest.approx(metrics["vae/latent/kl"], rel=1e-4)

    client = MlflowClient(tracking_uri)
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("aevae").experiment_id])}
    assert set(runs) == {"evaluate", *(f"evaluate/{name}" for name in expected)}
    assert all(r.info.status == "FINISHED" and r.data.tags["aevae.stage"] == "evaluate" for r in runs.values())
    assert runs["evaluate"].data.metrics == pytest.approx(metrics)
    for name in ("ae", "vae"):  # per-model runs share the metric names: one column per metric
        assert runs[f"evaluate/{name}"].data.tags["mlflow.parentRunId"] == runs["evaluate"].info.run_id
        assert runs[f"evaluate/{name}"].data.metrics["test/mse"] == pytest.approx(metrics[f"{name}/test/mse"])
    logged = {a.path for a in client.list_artifacts(runs["evaluate/ae"].info.run_id, "figures")}
    assert "figures/ae_denoising.png" in logged and "figures/ae_samples.png" not in logged
    logged = {a.path for a in client.list_artifacts(runs["evaluate/vae"].info.run_id, "figures")}
    assert "figures/vae_traversals.png" in logged

    # the same config in-process gives the same numbers: the evaluation is seeded
    cfg = compose_config("evaluate", [*overrides, "logger=none"])
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "again")
    assert evaluate(cfg) == pytest.approx(metrics, rel=1e-6)

    # the same models before training, evaluated alike: the trained ones have to do better
    # (untrained, the AE already scores test/mse 0.18 on digits and the VAE has no active unit)
    untrained = {name: untrained_checkpoint(checkpoints[name], tmp_path / "untrained" / f"{name}.ckpt") for name in ("dae", "vae")}
    cfg = compose_config("evaluate", [f"+models.ae={untrained['dae']}", f"+models.vae={untrained['vae']}", *settings, "logger=none"])
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "untrained" / "eval")
    before = evaluate(cfg)
    for key in ("ae/test/mse", "vae/test/mse", "vae/test/nll_iwae"):
        assert metrics[key] <= IMPROVED * before[key], (key, metrics[key], before[key])
    assert metrics["ae/test/ssim"] > before["ae/test/ssim"] + 0.1
    assert metrics["vae/latent/active_units"] > before["vae/latent/active_units"]


@pytest.mark.fast
def test_kl_per_dimension_sums_to_the_total_kl_and_active_units_count_varying_means():
    generator = torch.Generator().manual_seed(0)
    mu = torch.randn(500, 4, generator=generator) * torch.tensor([1.0, 0.5, 0.05, 0.0])
    logvar = torch.randn(500, 4, generator=generator) * 0.1
    per_dim = kl_per_dimension(mu, logvar)
    assert per_dim.shape == (4,) and float(per_dim.sum()) == pytest.approx(float(gaussian_kl(mu, logvar).mean()), rel=1e-5)
    assert active_units(mu) == 2  # variances 1, 0.25 above 0.01; 0.0025 and 0 below
    assert most_active_dimensions(mu, 3).tolist() == [0, 1, 2]


@pytest.mark.fast
def test_pca_reconstruction_is_exact_at_full_rank_and_improves_with_components():
    images = torch.rand(60, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    errors = [float((fit_pca(images, k, seed=0).reconstruct(images) - images).square().mean()) for k in (2, 8, 16)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-10
    assert fit_pca(images, 2, seed=0).codes(images).shape == (60, 2)


@pytest.mark.fast
def test_corruption_is_seeded_and_at_its_level():
    x = torch.full((200, 1, 8, 8), 0.5)
    draw = lambda kind, level, seed: corrupt(x, kind, level, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw("mask", 0.25, 1), draw("mask", 0.25, 1)) and not torch.equal(draw("mask", 0.25, 1), draw("mask", 0.25, 2))
    assert float((draw("mask", 0.25, 1) == 0).float().mean()) == pytest.approx(0.25, abs=0.02)
    assert float((draw("gaussian", 0.1, 1) - x).std()) == pytest.approx(0.1, rel=0.05)  # 0.5 +- 0.1 is rarely clipped
