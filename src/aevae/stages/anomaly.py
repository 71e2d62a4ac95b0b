"""The anomaly stage: per case of the protocol (`one_class`, Ruff et al. 2018: one class normal,
the others anomalous; `one_anomalous`: one class anomalous, the others normal), train the model
on the case's normal training images, score the test images by every method of the model, and
beside them by the classical detectors fitted on the same normal images (on pixels and on PCA
features of the model's latent size)."""

import csv
import io
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import MISSING
from torch import Tensor

from aevae.config import LikelihoodConfig, check_classes, validate
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.errors import ConfigError, require
from aevae.evaluation.anomaly import Case, class_means, defect_cases, detection_metrics, pca_scores, protocol_cases, roc_points, standardized_sum
from aevae.evaluation.batches import map_batches
from aevae.evaluation.detectors import feature_scores
from aevae.evaluation.likelihood import likelihood_bounds
from aevae.evaluation.pca import fit_pca
from aevae.evaluation.probe import resolve_pca_components
from aevae.io import save_tensors, write_atomic, write_json
from aevae.models import BaseAutoencoder, Capability, load_model
from aevae.run.progress import announce
from aevae.stages import train
from aevae.stages.common import config_part, log_summary, open_stage_run, print_summary
from aevae.stages.data_facts import class_names, has_labels, skipped
from aevae.stages.train import TrainConfig

log = logging.getLogger(__name__)

ROC_COLUMNS = ("model", "class", "fpr", "tpr")
RocRow = tuple[str, str, float, float]  # a row of roc.csv
Detectors = Mapping[str, Any]  # name -> a callable that builds an unfitted detector


class AnomalyProtocol(StrEnum):  # the cases of each: aevae.evaluation.anomaly.PROTOCOLS
    one_class = "one_class"  # each class of normal_classes in turn is normal, the others anomalies
    one_anomalous = "one_anomalous"  # each class of normal_classes in turn is the anomaly, the others normal


@dataclass
class DetectorFeatures:  # which detectors (names of `detectors`) run on which features
    pixels: list[str] = MISSING  # the flattened images
    pca: list[str] = MISSING  # the projections on the PCA baseline's components
    latent: list[str] = MISSING  # the model's codes (`embed`: a VAE's posterior mean)
    residual: list[str] = MISSING  # the image minus the model's mean reconstruction


@dataclass
class AnomalyConfig(TrainConfig):
    cases: AnomalyProtocol = MISSING  # the protocol (params.yaml: anomaly.protocol)
    normal_classes: Optional[list[int]] = MISSING  # one model per class (the normal class, or the anomalous one: see protocol); null: every class of the data
    detectors: dict[str, Any] = MISSING  # name -> a Hydra `_target_` node of a detector with fit / score_samples
    features: DetectorFeatures = MISSING
    complexity: dict[str, Any] = MISSING  # name -> a Hydra `_target_` node of a function: images (N, C, H, W) -> their complexity (N,)
    ensemble: list[str] = MISSING  # the model's methods summed (each standardised on normal validation images): score, iwae, latent_<detector>, residual_<detector>, error_per_<complexity>; []: none
    likelihood: LikelihoodConfig = MISSING  # samples > 0: also score a VAE by its IS estimate of -log p(x)
    pca_components: Optional[int] = MISSING  # the PCA baseline's size; null: the model's latent size
    roc_points: int = MISSING  # at most this many points per ROC curve in roc.csv
    train_dir: str = MISSING  # the model of class c trains in <train_dir>/class_<c>

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.normal_classes is not None:
            check_classes("normal_classes", self.normal_classes)
        require(self.data.train_classes is None, "data.train_classes", "set per normal class by the anomaly stage; leave it null")
        require(self.roc_points >= 2, "roc_points", f"must be >= 2, got {self.roc_points}")
        require(self.pca_components is None or self.pca_components > 0, "pca_components", f"must be > 0 or null, got {self.pca_components}")
        for name, node in self.detectors.items():
            require(isinstance(node, dict) and "_target_" in node, f"detectors.{name}", "give a `_target_` (a detector class with fit / score_samples) and its arguments")
        for features in ("pixels", "pca", "latent", "residual"):
            for name in getattr(self.features, features):
                require(name in self.detectors, f"features.{features}", f"{name} is not a key of detectors ({', '.join(self.detectors)})")
        for name, node in self.complexity.items():
            require(isinstance(node, dict) and "_target_" in node, f"complexity.{name}", "give a `_target_` (a function of images (N, C, H, W) -> (N,)) and its arguments")
        methods = ["score", "iwae", *(f"latent_{name}" for name in self.features.latent), *(f"residual_{name}" for name in self.features.residual)]
        methods += [f"error_per_{name}" for name in self.complexity]
        for part in self.ensemble:
            require(part in methods, "ensemble", f"{part} is not one of the model's methods ({', '.join(methods)})")
        require("iwae" not in self.ensemble or self.likelihood.samples > 0, "ensemble", "iwae needs likelihood.samples > 0")


def class_config(cfg: AnomalyConfig, case: Case) -> TrainConfig:
    """The training config of the model for `case`: its training and validation images are the
    case's normal labels only, its outputs go to `<train_dir>/<case>`, its run is
    `anomaly/<model>/<case>`."""
    return config_part(
        cfg,
        TrainConfig,
        data=replace(cfg.data, train_classes=list(case.normal)),
        output_dir=str(Path(cfg.train_dir) / case.name),
        logger=replace(cfg.logger, run_name=f"{cfg.stage}/{cfg.model.label}/{case.name}"),
    )


def model_features(model: BaseAutoencoder, images: Tensor, batch: int) -> dict[str, np.ndarray]:
    """The model's feature rows of `images` that detectors run on: `latent`, its codes (`embed`:
    a VAE's posterior mean); `residual`, the image minus its mean reconstruction, flattened."""
    codes = map_batches(model.embed, images, batch)
    residual = images.flatten(1) - map_batches(model.reconstruct, images, batch).flatten(1)
    return {"latent": codes.double().cpu().numpy(), "residual": residual.double().cpu().numpy()}


def model_scores(model: BaseAutoencoder, images: Tensor, normal_train: Tensor, cfg: AnomalyConfig, detectors: Detectors) -> dict[str, Tensor]:
    """Every method's scores of `images` by the model (higher = more anomalous), float64:
    `<model>`, its own `score_anomaly` (reconstruction error; a VAE's -ELBO); `<model>_iwae`,
    for a model with a likelihood (`Capability.likelihood`) and `likelihood.samples > 0`, its
    importance-sampled -log p(x); `<model>_<latent|residual>_<detector>`, each detector of
    `features.latent` / `features.residual` fitted on the features (`model_features`) of
    `normal_train`; `<model>_error_per_<name>` (images only), the squared error of the mean
    reconstruction divided by each image's complexity by `complexity.<name>`."""
    label, batch = cfg.model.label, cfg.data.eval_batch_size
    scores = {label: map_batches(model.score_anomaly, images, batch).double().cpu()}
    if model.supports(Capability.likelihood) and cfg.likelihood.samples > 0:
        generator = torch.Generator(device=images.device).manual_seed(cfg.seed)
        bounds = likelihood_bounds(model, images, cfg.likelihood.samples, cfg.likelihood.batch_size, generator)
        scores[f"{label}_iwae"] = -bounds["log_px"].double().cpu()
    normal, scored = model_features(model, normal_train, batch), model_features(model, images, batch)
    for features in ("latent", "residual"):
        found = feature_scores(detectors, getattr(cfg.features, features), features, normal[features], scored[features])
        scores |= {f"{label}_{name}": torch.from_numpy(values) for name, values in found.items()}
    if images.dim() == 4:  # vectors have no neighbouring pixels: data_facts.SKIP_VECTORS["complexity"]
        error = torch.from_numpy((scored["residual"] ** 2).sum(1))
        for name, node in cfg.complexity.items():
            scores[f"{label}_error_per_{name}"] = error / instantiate(node, _partial_=True)(images).cpu().double().clamp_min(1e-12)
    return scores


def baseline_scores(normal_train: Tensor, test_images: Tensor, n_components: int, cfg: AnomalyConfig, detectors: Detectors) -> dict[str, Tensor]:
    """The classical detectors' scores of `test_images`, fitted on `normal_train`:
    `pca<k>`, the reconstruction error of a k-component PCA; `pixels_<detector>` and
    `pca<k>_<detector>`, each detector of `features.pixels` and `features.pca` on the pixels
    and on the PCA projections."""
    pca = fit_pca(normal_train, n_components, cfg.seed)
    name = f"pca{n_components}"
    flat = [x.flatten(1).double().cpu().numpy() for x in (normal_train, test_images)]
    scores = {name: pca_scores(pca, test_images)}
    scores |= feature_scores(detectors, cfg.features.pixels, "pixels", *flat)
    scores |= feature_scores(detectors, cfg.features.pca, name, *(pca.pca.transform(x) for x in flat))
    return {method: torch.as_tensor(values) for method, values in scores.items()}


def case_scores(model: BaseAutoencoder, case: Case, data: Mapping[str, tuple[Tensor, Tensor]], cfg: AnomalyConfig, detectors: Detectors) -> dict[str, Tensor]:
    """Every method's scores of all test images for `case`: the model's (and, when `ensemble`
    names methods, `<model>_ensemble`: the sum of those the data allow, each standardised on the
    case's normal validation images), then the baselines'."""
    (train_images, train_labels), (val_images, val_labels), (test_images, _) = data["train"], data["val"], data["test"]
    normal_train = train_images[torch.isin(train_labels, torch.tensor(case.normal, device=train_labels.device))]
    normal_val = val_images[torch.isin(val_labels, torch.tensor(case.normal, device=val_labels.device))]
    both = model_scores(model, torch.cat([test_images, normal_val]), normal_train, cfg, detectors)
    scores = {method: values[: len(test_images)] for method, values in both.items()}
    if cfg.ensemble:
        named = [cfg.model.label if part == "score" else f"{cfg.model.label}_{part}" for part in cfg.ensemble]
        chosen = [method for method in named if method in both]  # vectors have no error_per_<complexity>: SKIP_VECTORS says so
        held_out = {method: both[method][len(test_images) :] for method in chosen}
        scores[f"{cfg.model.label}_ensemble"] = standardized_sum({method: scores[method] for method in chosen}, held_out)
    n_components = resolve_pca_components(cfg.pca_components, {cfg.model.label: model})
    return scores | baseline_scores(normal_train, test_images, n_components, cfg, detectors)


def case_results(scores: dict[str, Tensor], labels: Tensor, case: Case, max_points: int) -> tuple[dict[str, float], list[RocRow]]:
    """`anomaly/<method>/<metric>/<case>` metrics and subsampled ROC rows of every method, over
    the test images the case keeps."""
    keep = case.test_mask(labels)
    targets = case.targets(labels[keep])
    metrics, curves = {}, []
    for method, method_scores in scores.items():
        kept = method_scores[keep.to(method_scores.device)]
        for metric, value in detection_metrics(kept, targets).items():
            metrics[f"anomaly/{method}/{metric}/{case.name}"] = value
        fpr, tpr = roc_points(kept, targets, max_points)
        curves.extend((method, case.name, float(f), float(t)) for f, t in zip(fpr, tpr))
    return metrics, curves


def roc_csv(rows: list[RocRow]) -> str:
    """ROC points as CSV text with the columns of `ROC_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ROC_COLUMNS)
    writer.writerows((method, case, f"{fpr:.6g}", f"{tpr:.6g}") for method, case, fpr, tpr in rows)
    return buffer.getvalue()


def data_cases(cfg: AnomalyConfig, splits: Any, classes: list[int]) -> list[Case]:
    """The cases the data call for: the anomaly layout's (`defects`, whatever `cases` says: its
    training images are all `good`), else those of the protocol `cfg.cases` over the test labels."""
    if splits.normal_label is not None:
        print(f"{cfg.stage}/{cfg.model.label}: the anomaly layout: one model of the normal images, tested against every defect and each one", flush=True)
        return defect_cases(splits.normal_label, class_names(splits))
    missing = sorted(set(cfg.normal_classes or ()) - set(classes))
    if missing:
        raise ConfigError(f"normal_classes: {missing} not among the test labels of the data ({', '.join(map(str, classes))}); list classes of the data, or null for all")
    return protocol_cases(cfg.cases, classes, cfg.normal_classes)


def run(cfg: AnomalyConfig, parent: str | None = None) -> dict[str, float]:
    """For each case of the protocol `cfg.cases` (one per class of `cfg.normal_classes`): train the
    configured model on the case's normal images (one MLflow run each, nested under this
    stage's run, itself under `parent` if given), score the test images by every method and
    baseline (`case_scores`). Writes `metrics.json` (`anomaly/<method>/<auroc|auprc>/<case|mean>`,
    and `anomaly/<model>/levelled_off/<case|mean>`: whether each case's training levelled off,
    and the share that did) and `roc.csv` under `cfg.output_dir`, and logs them; beside the
    case models, `<train_dir>/scores.pt` holds every test image's score per method and case
    (`<method>/<case>`) and the test `labels`. Returns the metrics."""
    cfg = validate(cfg)
    detectors = {name: instantiate(node, _partial_=True) for name, node in cfg.detectors.items()}
    splits = load_or_prepare(cfg.data)
    output_dir = Path(cfg.output_dir)
    if not has_labels(splits):
        log.warning("%s/%s: %s", cfg.stage, cfg.model.label, skipped(splits)["anomaly"])
        write_json(output_dir / "metrics.json", {})
        write_atomic(output_dir / "roc.csv", lambda tmp: tmp.write_text(roc_csv([])))
        return {}
    if cfg.complexity and "complexity" in skipped(splits):
        log.warning("%s/%s: %s", cfg.stage, cfg.model.label, skipped(splits)["complexity"])
    datamodule = InMemoryDataModule(splits, cfg.data, seed=cfg.seed)
    datamodule.setup()
    data = {split: datamodule.tensors[split] for split in ("train", "val", "test")}
    test_labels = data["test"][1]
    cases = data_cases(cfg, splits, test_labels.unique().tolist())
    metrics: dict[str, float] = {}
    curves: list[RocRow] = []
    saved_scores = {"labels": test_labels.cpu()}
    trainings = list(dict.fromkeys(case.normal for case in cases))  # cases that share normal labels share one model
    started = time.monotonic()
    with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.data.name, label=cfg.model.label, parent=parent) as stage_run:
        scored: dict[tuple[int, ...], dict[str, Tensor]] = {}
        for case in cases:
            if case.normal not in scored:
                announce(cfg.trainer.progress, f"{cfg.stage}/{cfg.model.label} {case.name}", len(scored) + 1, len(trainings), started)
                class_cfg = class_config(cfg, case)
                trained = train.run(class_cfg, parent=stage_run.run_id)
                metrics[f"anomaly/{cfg.model.label}/levelled_off/{case.name}"] = trained["val/levelled_off"]
                model = load_model(Path(class_cfg.output_dir) / "checkpoints" / "best.ckpt")
                scored[case.normal] = case_scores(model, case, data, cfg, detectors)
            scores = scored[case.normal]
            saved_scores |= {f"{method}/{case.name}": values.cpu() for method, values in scores.items()}
            case_metrics, case_curves = case_results(scores, test_labels.cpu(), case, cfg.roc_points)
            metrics |= case_metrics
            curves += case_curves
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
