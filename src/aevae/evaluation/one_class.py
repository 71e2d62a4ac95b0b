"""The one-class anomaly stage (Ruff et al. 2018): per normal class, train on that class only,
score the whole test set and measure how well the scores separate the other classes."""

import copy
import csv
import io
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor

from aevae.config import validate_anomaly
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.evaluation.anomaly import anomaly_targets, detection_metrics, pca_scores, roc_points
from aevae.evaluation.batches import map_batches
from aevae.evaluation.likelihood import likelihood_bounds
from aevae.io import write_atomic, write_json
from aevae.models import BaseAutoencoder, VariationalAutoencoder, load_model
from aevae.tracking import stage_run
from aevae.training import train

PARENT_RUN_TAG = "mlflow.parentRunId"
ROC_COLUMNS = ("model", "class", "fpr", "tpr")
RocRow = tuple[str, int, float, float]  # a row of roc.csv


def class_config(cfg: DictConfig, normal_class: int, parent_run_id: str | None = None) -> DictConfig:
    """The training config of the model for `normal_class`: its training and validation images are
    that class only, its outputs go to `<train_dir>/class_<c>`, its MLflow run is named after the
    class (and nested under `parent_run_id` when no run group is configured)."""
    class_cfg = copy.deepcopy(cfg)
    OmegaConf.resolve(class_cfg)
    class_cfg.data.train_classes = [normal_class]
    class_cfg.output_dir = str(Path(class_cfg.train_dir) / f"class_{normal_class}")
    class_cfg.logger.run_name = f"{cfg.stage}-{cfg.model.name}-class_{normal_class}"
    if parent_run_id and not class_cfg.logger.group:
        with open_dict(class_cfg):
            class_cfg.logger.tags[PARENT_RUN_TAG] = parent_run_id
    return class_cfg


def anomaly_scores(model: BaseAutoencoder, images: Tensor, cfg: Any) -> dict[str, Tensor]:
    """Scores of the test images by the model (its `score_anomaly`) and, for a VAE with
    `likelihood.samples > 0`, by its importance-sampled -log p(x) (as `<model>_iwae`)."""
    name = cfg.model.name
    scores = {name: map_batches(model.score_anomaly, images, cfg.data.eval_batch_size)}
    if isinstance(model, VariationalAutoencoder) and cfg.likelihood.samples > 0:
        generator = torch.Generator(device=images.device).manual_seed(cfg.seed)
        bounds = likelihood_bounds(model, images, cfg.likelihood.samples, cfg.likelihood.batch_size, generator)
        scores[f"{name}_iwae"] = -bounds["log_px"]
    return scores


def train_and_score(
    cfg: DictConfig, normal_class: int, parent_run_id: str | None, normal_train: Tensor, test_images: Tensor
) -> dict[str, Tensor]:
    """Train the model of `normal_class` and score the test images with it and with a PCA of
    `latent_dim` components fitted on the same training images `normal_train`."""
    class_cfg = class_config(cfg, normal_class, parent_run_id)
    train(class_cfg)
    model = load_model(Path(class_cfg.output_dir) / "checkpoints" / "best.ckpt")
    scores = anomaly_scores(model, test_images, cfg)
    scores["pca"] = pca_scores(normal_train, test_images, cfg.model.latent_dim, cfg.seed)
    return scores


def class_results(
    scores: dict[str, Tensor], targets: Tensor, normal_class: int, max_points: int
) -> tuple[dict[str, float], list[RocRow]]:
    """`anomaly/<method>/<metric>/class_<c>` metrics and subsampled ROC rows of every method."""
    metrics, curves = {}, []
    for method, method_scores in scores.items():
        for metric, value in detection_metrics(method_scores, targets).items():
            metrics[f"anomaly/{method}/{metric}/class_{normal_class}"] = value
        fpr, tpr = roc_points(method_scores, targets, max_points)
        curves.extend((method, normal_class, float(f), float(t)) for f, t in zip(fpr, tpr))
    return metrics, curves


def class_means(metrics: dict[str, float]) -> dict[str, float]:
    """`<name>/mean` over the classes of every `<name>/class_<c>` metric."""
    groups: defaultdict[str, list[float]] = defaultdict(list)
    for key, value in metrics.items():
        groups[key.rsplit("/", 1)[0]].append(value)
    return {f"{group}/mean": mean(values) for group, values in groups.items()}


def roc_csv(rows: list[RocRow]) -> str:
    """ROC points as CSV text with the columns of `ROC_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ROC_COLUMNS)
    writer.writerows((model, normal_class, f"{fpr:.6g}", f"{tpr:.6g}") for model, normal_class, fpr, tpr in rows)
    return buffer.getvalue()


def run_anomaly(cfg: DictConfig) -> dict[str, float]:
    """For each class of `cfg.normal_classes`: train the configured model on that class (one
    MLflow run each), score every test image, and compare with the PCA baseline. Writes
    `metrics.json` (`anomaly/<method>/<auroc|auprc>/<class_c|mean>`) and `roc.csv` under
    `cfg.output_dir`, logs them to an MLflow run of stage `cfg.stage`, and returns the metrics."""
    validate_anomaly(cfg)
    datamodule = InMemoryDataModule(load_or_prepare(cfg.data), cfg.data, seed=cfg.seed)
    datamodule.setup()
    train_images, train_labels = datamodule.tensors["train"]
    test_images, test_labels = datamodule.tensors["test"]
    output_dir = Path(cfg.output_dir)
    metrics: dict[str, float] = {}
    curves: list[RocRow] = []
    with stage_run(cfg.logger, stage=cfg.stage, dataset=cfg.data.name, params=OmegaConf.to_container(cfg, resolve=True)) as run:
        for normal_class in cfg.normal_classes:
            scores = train_and_score(cfg, normal_class, run.run_id, train_images[train_labels == normal_class], test_images)
            targets = anomaly_targets(test_labels, normal_class)
            class_metrics, class_curves = class_results(scores, targets, normal_class, cfg.roc_points)
            metrics |= class_metrics
            curves += class_curves
        metrics |= class_means(metrics)
        metrics_file = write_json(output_dir / "metrics.json", metrics)
        roc_file = write_atomic(output_dir / "roc.csv", lambda tmp: tmp.write_text(roc_csv(curves)))
        run.log_metrics(metrics)
        run.log_artifact(metrics_file)
        run.log_artifact(roc_file)
    return metrics
