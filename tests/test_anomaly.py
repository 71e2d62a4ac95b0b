"""One-class anomaly detection: metrics against scikit-learn, the split, the baseline, the stage."""

import csv
import json
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate
from mlflow import MlflowClient
from sklearn.metrics import average_precision_score, roc_auc_score

from aevae.config import validate
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.errors import ConfigError
from aevae.reporting import report
from aevae.evaluation.anomaly import detection_metrics, one_class_cases, pca_scores, roc_points
from aevae.evaluation.pca import fit_pca
from aevae.models import load_model
from aevae.stages.anomaly import class_config, model_scores, run as run_anomaly
from conftest import REPO_ROOT, TINY
from untrained import untrained_model


@pytest.mark.fast
def test_auroc_and_auprc_match_scikit_learn_on_large_tied_scores():
    generator = torch.Generator().manual_seed(0)
    targets = (torch.rand(500, generator=generator) < 0.3).long()
    # scores in nats, far outside [0, 1], rounded so that there are ties
    scores = (400 + 50 * torch.randn(500, generator=generator) + 20 * targets).round()
    metrics = detection_metrics(scores, targets)
    assert metrics["auroc"] == pytest.approx(roc_auc_score(targets, scores), abs=1e-6)
    assert metrics["auprc"] == pytest.approx(average_precision_score(targets, scores), abs=1e-6)


@pytest.mark.fast
def test_separating_scores_give_the_extremes():
    targets = torch.tensor([0, 0, 0, 1, 1])
    scores = torch.tensor([100.0, 101.0, 102.0, 250.0, 300.0])
    assert detection_metrics(scores, targets) == {"auroc": 1.0, "auprc": 1.0}
    assert detection_metrics(-scores, targets)["auroc"] == 0.0


@pytest.mark.fast
def test_roc_points_are_subsampled_with_both_ends():
    generator = torch.Generator().manual_seed(0)
    targets = (torch.rand(1000, generator=generator) < 0.5).long()
    fpr, tpr = roc_points(torch.randn(1000, generator=generator) + targets, targets, max_points=20)
    assert len(fpr) == len(tpr) <= 20
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert torch.all(fpr.diff() >= 0) and torch.all(tpr.diff() >= 0)


@pytest.mark.fast
def test_one_class_split_trains_on_the_class_and_tests_on_everything(make_config):
    cfg = make_config(["model=ae"], config_name="anomaly")
    splits = load_or_prepare(cfg.data)
    (case,) = one_class_cases(range(10), [3])
    class_cfg = class_config(validate(cfg), case)
    assert class_cfg.output_dir.endswith("class_3") and class_cfg.logger.run_name == "anomaly/ae/class_3"
    datamodule = InMemoryDataModule(splits, class_cfg.data, seed=0)
    datamodule.setup()
    for split in ("train", "val"):
        labels = datamodule.tensors[split][1]
        assert len(labels) == int((splits.labels[split] == 3).sum()) > 0 and torch.all(labels == 3)
    test_labels = datamodule.tensors["test"][1]
    assert torch.equal(test_labels, splits.labels["test"]) and set(test_labels.tolist()) == set(range(10))
    targets = case.targets(test_labels)
    assert torch.equal(targets == 0, test_labels == 3) and case.test_mask(test_labels).all()
    assert cfg.data.train_classes is None  # the stage's own config is left untouched


@pytest.mark.fast
def test_pca_baseline_separates_a_digit_from_the_rest(make_config):
    cfg = make_config([], config_name="anomaly")
    splits = load_or_prepare(cfg.data)
    train_images = splits.scaled("train")[splits.labels["train"] == 0]
    scores = pca_scores(fit_pca(train_images, 8, seed=0), splits.scaled("test"))
    assert scores.shape == (len(splits.labels["test"]),)
    assert detection_metrics(scores, (splits.labels["test"] != 0).long())["auroc"] > 0.95


@pytest.mark.parametrize(
    ("override", "key"),
    [("normal_classes=[]", "normal_classes"), ("normal_classes=[1,-2]", "normal_classes"),
     ("normal_classes=[2,2]", "normal_classes"), ("data.train_classes=[1]", "data.train_classes"),
     ("roc_points=1", "roc_points"), ("likelihood.samples=-1", "likelihood.samples")],
)  # fmt: skip
@pytest.mark.fast
def test_invalid_anomaly_config_names_the_key(make_config, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(make_config([override], config_name="anomaly"))


@pytest.mark.fast
def test_a_normal_class_the_data_lack_is_named_before_any_training(make_config, tmp_path):
    with pytest.raises(ConfigError, match=r"normal_classes: \[12\] not among the test labels"):
        run_anomaly(make_config([*TINY, "model=ae", "normal_classes=[3,12]", "logger=none"], config_name="anomaly"))
    assert not (tmp_path / "out").exists()


def test_vae_is_also_scored_by_its_importance_sampled_likelihood(make_config, tmp_path):
    brief = ["trainer.limit_train_batches=null", "trainer.max_epochs=5", "model.lr=3e-3"]  # 5 epochs of the ~115 sevens
    cfg = make_config([*TINY, *brief, "model=vae", "normal_classes=[7]", "likelihood.samples=5", "logger=none"], config_name="anomaly")
    metrics = run_anomaly(cfg)
    detectors = ("knn", "lof", "iforest", "ocsvm")
    model_methods = {"vae", "vae_iwae", "vae_latent_knn", "vae_latent_lof", "vae_latent_mahalanobis", "vae_residual_lof", "vae_error_per_tv", "vae_ensemble"}
    methods = model_methods | {"pca4"} | {f"{features}_{d}" for features in ("pixels", "pca4") for d in detectors}
    scores = {f"anomaly/{m}/{s}/{c}" for m in methods for s in ("auroc", "auprc") for c in ("class_7", "mean")}
    assert metrics.keys() == scores | {"anomaly/vae/levelled_off/class_7", "anomaly/vae/levelled_off/mean"}  # whether its training levelled off
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    checkpoint = tmp_path / "out" / "classes" / "class_7" / "checkpoints" / "best.ckpt"
    assert checkpoint.exists()

    # both likelihood scores tell the other digits from sevens far better than chance (0.5) and
    # than the same model before training (AUROC 0.28-0.31 here, below chance)
    datamodule = InMemoryDataModule(load_or_prepare(cfg.data), cfg.data, seed=cfg.seed)
    datamodule.setup()
    (train_images, train_labels), (test_images, test_labels) = datamodule.tensors["train"], datamodule.tensors["test"]
    detectors = {name: instantiate(node, _partial_=True) for name, node in cfg.detectors.items()}
    untrained = model_scores(untrained_model(load_model(checkpoint), cfg.seed), test_images, train_images[train_labels == 7], cfg, detectors)
    for method in ("vae", "vae_iwae"):
        auroc, before = metrics[f"anomaly/{method}/auroc/class_7"], detection_metrics(untrained[method], (test_labels != 7).long())["auroc"]
        assert auroc > 0.75 and auroc > before + 0.2, (method, auroc, before)


@pytest.mark.slow
def test_anomaly_entry_point_runs_every_class_in_one_process(tmp_path, tracking_uri):
    out = tmp_path / "anomaly"
    result = subprocess.run(
        [sys.executable, "pipelines/anomaly.py", *TINY, "model=ae", "normal_classes=[0,1]", "roc_points=10",
         f"output_dir={out}", f"logger.tracking_uri={tracking_uri}", f"hydra.run.dir={tmp_path}/hydra"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for method in ("ae", "pca4", "ae_latent_lof", "pixels_lof"):
        for metric in ("auroc", "auprc"):
            per_class = [metrics[f"anomaly/{method}/{metric}/class_{c}"] for c in (0, 1)]
            assert metrics[f"anomaly/{method}/{metric}/mean"] == pytest.approx(sum(per_class) / 2)
    assert metrics["anomaly/pca4/auroc/mean"] > 0.9
    methods = {key.split("/")[1] for key in metrics if "/auroc/" in key}
    with open(out / "roc.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["model", "class", "fpr", "tpr"]
    assert {(row["model"], row["class"]) for row in rows} == {(m, c) for m in methods for c in ("class_0", "class_1")}
    assert len(rows) <= len(methods) * 2 * 10

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("aevae").experiment_id])
    (summary,) = [run for run in runs if run.info.run_name == "anomaly/ae"]
    trained = sorted(run.info.run_name for run in runs if run.data.tags.get("mlflow.parentRunId") == summary.info.run_id)
    assert len(runs) == 3 and trained == ["anomaly/ae/class_0", "anomaly/ae/class_1"]
    assert all(run.info.status == "FINISHED" and run.data.tags["aevae.stage"] == "anomaly" for run in runs)
    assert summary.data.metrics == pytest.approx({k: v for k, v in metrics.items()})
    assert {a.path for a in client.list_artifacts(summary.info.run_id)} == {"metrics.json", "roc.csv"}


def test_pca_baselines_of_two_latent_sizes_keep_their_own_keys(make_config, tmp_path):
    files = []
    for model, latent in (("ae", 4), ("vae", 8)):
        out = tmp_path / model
        cfg = make_config([*TINY, f"model={model}", f"model.latent_dim={latent}", "normal_classes=[0]", "logger=none", "features.pixels=[]"], config_name="anomaly")
        cfg.output_dir, cfg.train_dir = str(out), str(out / "classes")
        metrics = run_anomaly(cfg)
        assert f"anomaly/pca{latent}/auroc/mean" in metrics and not any(f"/pca{12 - latent}" in key for key in metrics)  # the other size
        files.append({"path": str(out / "metrics.json")})
    merged = report.load_metrics(files)
    assert {"anomaly/pca4/auroc/mean", "anomaly/pca8/auroc/mean", "anomaly/pca4_lof/auroc/mean", "anomaly/pca8_lof/auroc/mean"} <= merged.keys()
    text = report.render_markdown("study", [{"title": "Anomaly", "files": files, "ranking": True}], tmp_path / "report.md")
    assert "| pca4 |" in text and "| pca8 |" in text
