"""The anomaly stage, the one-class protocol of Ruff et al. (2018): per normal class, train on
that class only, score the whole test set, and measure how well the scores separate the other
classes; a PCA of the same size is the baseline."""

import csv
import io
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from aevae.config import TrainConfig, validate
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.evaluation.anomaly import anomaly_targets, class_means, detection_metrics, pca_scores, roc_points
from aevae.evaluation.batches import map_batches
from aevae.evaluation.likelihood import likelihood_bounds
from aevae.evaluation.probe import resolve_pca_components
from aevae.io import save_tensors, write_atomic, write_json
from aevae.models import BaseAutoencoder, Capability, load_model
from aevae.stages import train
from aevae.stages.common import config_part, log_summary, open_stage_run, print_summary

ROC_COLUMNS = ("model", "class", "fpr", "tpr")
RocRow = tuple[str, int, float, float]  # a row of roc.csv


def class_config(cfg: DictConfig, normal_class: int) -> DictConfig:
    """The training config (a `TrainConfig`) of the model for `normal_class`: its training and
    validation images are that class only, its outputs go to `<train_dir>/class_<c>`, its run is `anomaly/<model>/class_<c>`."""
    class_cfg = config_part(cfg, TrainConfig)
    class_cfg.data.train_classes = [normal_class]
    class_cfg.output_dir = str(Path(cfg.train_dir) / f"class_{normal_class}")
    class_cfg.logger.run_name = f"{cfg.stage}/{cfg.model.label}/class_{normal_class}"
    return class_cfg


def anomaly_scores(model: BaseAutoencoder, images: Tensor, cfg: Any) -> dict[str, Tensor]:
    """Scores of the test images by the model (its `score_anomaly`) and, for a model with a
    likelihood (`Capability.likelihood`: a VAE, or an ssvae with the class summed out) and
    `likelihood.samples > 0`, by its importance-sampled -log p(x) (as `<model>_iwae`)."""
    label = cfg.model.label
    scores = {label: map_batches(model.score_anomaly, images, cfg.data.eval_batch_size)}
    if model.supports(Capability.likelihood) and cfg.likelihood.samples > 0:
        generator = torch.Generator(device=images.device).manual_seed(cfg.seed)
        bounds = likelihood_bounds(model, images, cfg.likelihood.samples, cfg.likelihood.batch_size, generator)
        scores[f"{label}_iwae"] = -bounds["log_px"]
    return scores


def class_results(scores: dict[str, Tensor], targets: Tensor, normal_class: int, max_points: int) -> tuple[dict[str, float], list[RocRow]]:
    """`anomaly/<method>/<metric>/class_<c>` metrics and subsampled ROC rows of every method."""
    metrics, curves = {}, []
    for method, method_scores in scores.items():
        for metric, value in detection_metrics(method_scores, targets).items():
            metrics[f"anomaly/{method}/{metric}/class_{normal_class}"] = value
        fpr, tpr = roc_points(method_scores, targets, max_points)
        curves.extend((method, normal_class, float(f), float(t)) for f, t in zip(fpr, tpr))
    return metrics, curves


def roc_csv(rows: list[RocRow]) -> str:
    """ROC points as CSV text with the columns of `ROC_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ROC_COLUMNS)
    writer.writerows((model, normal_class, f"{fpr:.6g}", f"{tpr:.6g}") for model, normal_class, fpr, tpr in rows)
    return buffer.getvalue()


def run(cfg: DictConfig, parent: str | None = None) -> dict[str, float]:
    """For each class of `cfg.normal_classes`: train the configured model on that class (one
    MLflow run each, nested under this stage's run, itself under `parent` if given), score every
    test image, and compare with the PCA baseline. Writes `metrics.json`
    (`anomaly/<method>/<auroc|auprc>/<class_c|mean>`, and `anomaly/<model>/levelled_off/<class_c|mean>`:
    whether each class's training levelled off, and the share that did) and `roc.csv` under `cfg.output_dir`, and
    logs them; beside the class models, `<train_dir>/scores.pt` holds every test image's score
    per method and class (`<method>/class_<c>`) and the test `labels`. Returns the metrics."""
    validate(cfg)
    datamodule = InMemoryDataModule(load_or_prepare(cfg.data), cfg.data, seed=cfg.seed)
    datamodule.setup()
    train_images, train_labels = datamodule.tensors["train"]
    test_images, test_labels = datamodule.tensors["test"]
    output_dir = Path(cfg.output_dir)
    metrics: dict[str, float] = {}
    curves: list[RocRow] = []
    saved_scores = {"labels": test_labels.cpu()}
    with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.data.name, label=cfg.model.label, parent=parent) as stage_run:
        for normal_class in cfg.normal_classes:
            class_cfg = class_config(cfg, normal_class)
            trained = train.run(class_cfg, parent=stage_run.run_id)
            metrics[f"anomaly/{cfg.model.label}/levelled_off/class_{normal_class}"] = trained["val/levelled_off"]
            model = load_model(Path(class_cfg.output_dir) / "checkpoints" / "best.ckpt")
            scores = anomaly_scores(model, test_images, cfg)
            scores["pca"] = pca_scores(train_images[train_labels == normal_class], test_images, resolve_pca_components(cfg.pca_components, {cfg.model.label: model}), cfg.seed)
            saved_scores |= {f"{method}/class_{normal_class}": values.cpu() for method, values in scores.items()}
            class_metrics, class_curves = class_results(scores, anomaly_targets(test_labels, normal_class), normal_class, cfg.roc_points)
            metrics |= class_metrics
            curves += class_curves
        metrics |= class_means(metrics)
        outputs = [
            write_json(output_dir / "metrics.json", metrics),
            write_atomic(output_dir / "roc.csv", lambda tmp: tmp.write_text(roc_csv(curves))),
        ]
        save_tensors(Path(cfg.train_dir) / "scores.pt", saved_scores)
        stage_run.log_metrics(metrics)
        for path in outputs:
            stage_run.log_artifact(path)
    means = {name: value for name, value in metrics.items() if name.endswith("/mean")}
    title = f"{cfg.stage}/{cfg.model.label} done"
    if parent is None:
        print_summary(title, means, output_dir, stage_run)
    else:  # one of a stage's runs (a seed of a reference recipe): that stage prints the summary
        log_summary(title, means)
    return metrics
