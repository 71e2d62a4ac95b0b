"""The evaluate stage: reconstruction, likelihood and figures of trained checkpoints on the test split."""

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aevae.config import validate
from aevae.data import InMemoryDataModule, Splits, load_or_prepare
from aevae.devices import check_device
from aevae.errors import DataError
from aevae.evaluation.batches import map_batches
from aevae.evaluation.likelihood import likelihood_bounds
from aevae.evaluation.model_figures import save_model_figures
from aevae.evaluation.reconstruction import reconstruction_metrics
from aevae.io import write_json
from aevae.models import BaseAutoencoder, VariationalAutoencoder, load_model
from aevae.stages.common import open_stage_run, print_summary

log = logging.getLogger(__name__)

# Data settings that define what a likelihood is measured on: a checkpoint's record overrides the config.
PROTOCOL_KEYS = ("binarize", "threshold")
DATAMODULE_HPARAMS = "datamodule_hyper_parameters"


def data_config_for(checkpoint: str | Path, data_cfg: Any) -> Any:
    """`data_cfg` with the binarization the checkpoint's model was trained with, when the
    checkpoint records its training data config; raises DataError if it names another data set."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    trained = state.get(DATAMODULE_HPARAMS, {}).get("data")
    resolved = copy.deepcopy(data_cfg)
    if trained is None:
        return resolved
    if trained["name"] != data_cfg.name:
        raise DataError(f"{checkpoint}: trained on {trained['name']!r}, but data.name is {data_cfg.name!r}")
    for key in PROTOCOL_KEYS:
        if trained[key] != data_cfg[key]:
            log.warning("%s: data.%s=%s as trained (config: %s)", checkpoint, key, trained[key], data_cfg[key])
        resolved[key] = trained[key]
    return resolved


def held_out_images(splits: Splits, data_cfg: Any, seed: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The test images and labels after the configured binarization, on `device`."""
    datamodule = InMemoryDataModule(splits, data_cfg, seed=seed)
    datamodule.setup()
    images, labels = datamodule.tensors["test"]
    return images.to(device), labels.to(device)


def model_metrics(model: BaseAutoencoder, images: Tensor, cfg: Any) -> dict[str, float]:
    """Reconstruction metrics of any model; test ELBO and IS estimate of -log p(x) of a VAE
    (log-weights summed in fp32: bf16 would lose the nats these sums are compared in)."""
    recon = map_batches(model.reconstruct, images, cfg.data.eval_batch_size)
    metrics = reconstruction_metrics(recon, images, cfg.data.eval_batch_size)
    if isinstance(model, VariationalAutoencoder):
        generator = torch.Generator(device=images.device).manual_seed(cfg.seed)
        bounds = likelihood_bounds(model, images, cfg.likelihood.samples, cfg.likelihood.batch_size, generator)
        metrics["elbo"] = float(bounds["elbo"].mean())
        metrics["nll_iwae"] = float(-bounds["log_px"].mean())
    return metrics


def protocol(model: BaseAutoencoder, checkpoint: str, data_cfg: Any, n_test: int, cfg: Any) -> dict[str, Any]:
    """What the numbers of one model were measured on, to set them beside published ones."""
    described = {"checkpoint": str(checkpoint), "dataset": str(data_cfg.name), "binarize": str(data_cfg.binarize), "n_test": n_test}
    if data_cfg.binarize == "threshold":
        described["threshold"] = data_cfg.threshold
    if isinstance(model, VariationalAutoencoder):
        described |= {"likelihood": str(model.cfg.likelihood), "iwae_samples": cfg.likelihood.samples, "units": "nats per image"}
    return described


def run(cfg: Any) -> dict[str, float]:
    """Evaluate every checkpoint of `cfg.models` on the test split; write `metrics.json`
    (`<model>/test/<metric>`), `protocol.json` and `figures/<model>_<kind>.png` under
    `cfg.output_dir`. MLflow: the stage's run, and one run per model nested under it that logs
    `test/<metric>` (one column per metric across models). Returns the metrics."""
    validate(cfg)
    device = check_device("device", cfg.device)
    for checkpoint in cfg.models.values():
        if not Path(checkpoint).is_file():
            raise DataError(f"{checkpoint}: checkpoint not found (train the model first)")
    splits = load_or_prepare(cfg.data)
    output_dir = Path(cfg.output_dir)
    metrics: dict[str, float] = {}
    protocols: dict[str, Any] = {}
    with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.data.name) as stage_run:
        for name, checkpoint in cfg.models.items():
            model = load_model(checkpoint, map_location=device)
            if model.image_shape != splits.image_shape:
                raise DataError(f"{checkpoint}: model expects images {model.image_shape}, data has {splits.image_shape}")
            data_cfg = data_config_for(checkpoint, cfg.data)
            images, labels = held_out_images(splits, data_cfg, cfg.seed, device)
            model_results = {f"test/{key}": value for key, value in model_metrics(model, images, cfg).items()}
            metrics |= {f"{name}/{key}": value for key, value in model_results.items()}
            protocols[name] = protocol(model, checkpoint, data_cfg, len(images), cfg)
            figures = save_model_figures(model, images, labels, cfg.figures, output_dir / "figures", name, batch_size=cfg.data.eval_batch_size, seed=cfg.seed)
            with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.data.name, label=name, parent=stage_run.run_id) as model_run:
                model_run.log_metrics(model_results)
                for figure in figures:
                    model_run.log_artifact(figure, "figures")
        outputs = [write_json(output_dir / "metrics.json", metrics), write_json(output_dir / "protocol.json", protocols)]
        stage_run.log_metrics(metrics)
        for path in outputs:
            stage_run.log_artifact(path)
    print_summary(f"{cfg.stage} done", metrics, output_dir, stage_run)
    return metrics
