"""The probe stage: logistic regression on frozen latents (and on pixels and PCA) with few labels.

Data without labels have nothing to probe: the stage says so in one line and writes empty outputs.

The data module and the models (Lightning) are imported when the stage runs, not when it starts.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Optional, TYPE_CHECKING

import torch
from omegaconf import MISSING

from aevae.config import DataConfig, LogRegConfig, LoggerConfig, validate
from aevae.data import load_or_prepare
from aevae.data.subsets import labelled_subsets
from aevae.errors import DataError, require
from aevae.evaluation.probe import (
    ALL_LABELS,
    check_budgets,
    label_budgets,
    logistic_probe,
    probe_features,
    probe_metrics,
    probe_runs,
    probe_table,
    resolve_pca_components,
    summarize,
)
from aevae.io import plain, write_csv, write_json
from aevae.reporting.plots import save_accuracy_plot
from aevae.run.devices import check_device
from aevae.stages.common import open_stage_run, print_summary
from aevae.stages.data_facts import skipped

if TYPE_CHECKING:
    from aevae.models import BaseAutoencoder

log = logging.getLogger(__name__)


class Baseline(StrEnum):
    pixels = "pixels"
    pca = "pca"


@dataclass
class ProbeConfig:
    data: DataConfig = MISSING
    logger: LoggerConfig = MISSING
    models: dict[str, str] = MISSING  # feature name -> checkpoint whose `embed` gives the features
    baselines: list[Baseline] = MISSING
    pca_components: Optional[int] = MISSING  # null: the models' latent size
    labels_per_class: list[int] = MISSING  # label budgets, class-balanced subsets of train
    all_labels: bool = MISSING  # also probe with every training label
    repeats: int = MISSING  # subsets per budget, drawn with seeds seed .. seed + repeats - 1
    device: str = MISSING  # torch device of the embedding (the fits run on the CPU)
    seed: int = MISSING
    logreg: LogRegConfig = MISSING
    output_dir: str = MISSING
    stage: str = MISSING

    def __post_init__(self) -> None:
        require(self.data.train_classes is None, "data.train_classes", "the probe classifies every class; set it to null")
        features = [*self.models, *(b.value for b in self.baselines)]
        require(len(features) > 0, "models", "nothing to probe: name a checkpoint or a baseline")
        require(len(set(features)) == len(features), "models", f"feature names must be unique (baselines included), got {features}")
        require(self.pca_components is None or self.pca_components > 0, "pca_components", f"must be > 0 or null, got {self.pca_components}")
        budgets = list(self.labels_per_class)
        require(len(budgets) > 0 or self.all_labels, "labels_per_class", "empty while all_labels is false: nothing to probe")
        require(all(n > 0 for n in budgets), "labels_per_class", f"budgets must be > 0, got {budgets}")
        require(len(set(budgets)) == len(budgets), "labels_per_class", f"budgets must be unique, got {budgets}")
        require(self.repeats > 0, "repeats", f"must be > 0, got {self.repeats}")


def load_probed_models(checkpoints: Mapping[str, str], image_shape: Sequence[int], device: torch.device) -> dict[str, "BaseAutoencoder"]:
    """The trained models named in config on `device`, checked to match the data's image shape."""
    from aevae.models import load_model

    models = {}
    for name, path in checkpoints.items():
        if not Path(path).is_file():
            raise DataError(f"models.{name}: checkpoint {path} not found (run the train stage first)")
        model = load_model(path, map_location=device)
        if tuple(model.image_shape) != tuple(image_shape):
            raise DataError(f"models.{name}: {path} was trained on images of shape {model.image_shape}, the data has {tuple(image_shape)}")
        models[name] = model
    return models


def skip(cfg: Any, output_dir: Path, reason: str) -> dict[str, float]:
    """Say why nothing is probed; write the stage's outputs empty (the figure titled with why)."""
    log.warning("%s: %s", cfg.stage, reason)
    write_json(output_dir / "metrics.json", {})
    write_csv(output_dir / "accuracy.csv", [])
    write_csv(output_dir / "accuracy_runs.csv", [])
    save_accuracy_plot([], output_dir / "accuracy.png", f"{cfg.data.name}: probe {reason}", ALL_LABELS)
    return {}


def run(cfg: ProbeConfig) -> dict[str, float]:
    """Probe the configured checkpoints and baselines; write `metrics.json`, `accuracy.csv`
    (mean and std per feature x budget), `accuracy_runs.csv` (every fit) and `accuracy.png`
    under `cfg.output_dir`, and log metrics and files to MLflow. Returns the metrics."""
    from aevae.data import InMemoryDataModule

    cfg = validate(cfg)
    device = check_device("device", cfg.device)
    splits = load_or_prepare(cfg.data)
    output_dir = Path(cfg.output_dir)
    if "probe" in skipped(splits):
        return skip(cfg, output_dir, skipped(splits)["probe"])
    datamodule = InMemoryDataModule(splits, cfg.data, seed=cfg.seed)
    datamodule.setup()
    train_images, train_labels = datamodule.tensors["train"]
    test_images, test_labels = datamodule.tensors["test"]
    budgets = label_budgets(cfg.labels_per_class, cfg.all_labels)
    check_budgets(train_labels.numpy(), budgets)
    models = load_probed_models(cfg.models, splits.image_shape, device)
    baselines = [str(baseline) for baseline in cfg.baselines]  # StrEnum: the value
    n_components = resolve_pca_components(cfg.pca_components, models) if "pca" in baselines else None

    params = plain(cfg) | {"pca_components": n_components}  # as resolved from the models
    with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.data.name, params=params) as stage_run:
        features = probe_features(models, baselines, train_images, test_images, n_components, cfg.data.eval_batch_size, cfg.seed)
        seeds = [cfg.seed + r for r in range(cfg.repeats)]
        classifier = lambda: logistic_probe(cfg.logreg.C, cfg.logreg.max_iter)  # noqa: E731
        subsets = labelled_subsets(train_labels.numpy(), budgets, seeds)
        runs = probe_runs(features, train_labels.numpy(), test_labels.numpy(), subsets, classifier)
        summary = summarize(runs)
        metrics = probe_metrics(summary)
        title = f"{cfg.data.name}: logistic regression (C={cfg.logreg.C}) on frozen features, {cfg.repeats} seeds"
        outputs = [
            write_json(output_dir / "metrics.json", metrics),
            write_csv(output_dir / "accuracy.csv", summary),
            write_csv(output_dir / "accuracy_runs.csv", runs),
            save_accuracy_plot(summary, output_dir / "accuracy.png", title, ALL_LABELS),
        ]
        stage_run.log_metrics(metrics)
        for path in outputs:
            stage_run.log_artifact(path)
    log.info("probe accuracy (%s):\n%s", title, probe_table(metrics))
    print_summary(f"{cfg.stage} done", {k: v for k, v in metrics.items() if k.endswith("acc_mean")}, output_dir, stage_run)
    return metrics
