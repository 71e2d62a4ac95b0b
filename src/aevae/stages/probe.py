"""The probe stage: logistic regression on frozen latents (and on pixels and PCA) with few labels.

Data without labels have nothing to probe: the stage says so in one line and writes empty outputs.

The data module and the models (Lightning) are imported when the stage runs, not when it starts.
"""

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from aevae.config import validate
from aevae.data import load_or_prepare
from aevae.data.subsets import labelled_subsets
from aevae.run.devices import check_device
from aevae.errors import DataError
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
from aevae.stages.common import open_stage_run, print_summary
from aevae.stages.data_facts import skipped

if TYPE_CHECKING:
    from aevae.models import BaseAutoencoder

log = logging.getLogger(__name__)


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


def run(cfg: Any) -> dict[str, float]:
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
