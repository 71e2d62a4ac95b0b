"""Train one model from a config: data, model, trainer, checkpoints, metrics and MLflow logging."""

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from omegaconf import OmegaConf

from aevae import tracking
from aevae.callbacks import EpochHistory, ReseedEachEpoch
from aevae.config import validate_train
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.evaluation.figures import save_image_rows
from aevae.io import write_atomic, write_json
from aevae.models import BaseAutoencoder, build_model

log = logging.getLogger(__name__)

N_FIGURE_IMAGES = 10


def build_trainer(cfg: Any, logger: Any, callbacks: list[L.Callback]) -> L.Trainer:
    """A Lightning Trainer from the `trainer` config node."""
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    if kwargs["enable_progress_bar"]:
        callbacks = [*callbacks, RichProgressBar()]
    return L.Trainer(**kwargs, logger=logger, callbacks=callbacks, default_root_dir=cfg.output_dir)


def save_reconstruction_figure(model: BaseAutoencoder, images: torch.Tensor, path: Path) -> Path:
    """Inputs above their reconstructions."""
    with torch.no_grad():
        recon = model.reconstruct(images.to(model.device))
    return save_image_rows([images, recon], ["input", "recon"], path, title=f"{model.cfg.name} reconstructions")


def train(cfg: Any) -> dict[str, float]:
    """Train the model described by `cfg`; write checkpoints, metrics.json and history.csv under
    `cfg.output_dir`; log params, metrics and artifacts to MLflow. Returns the final val metrics.

    Re-running with the same output_dir resumes from `checkpoints/last.ckpt`.
    """
    validate_train(cfg)
    output_dir = Path(cfg.output_dir)
    logger = tracking.mlflow_logger(cfg.logger, stage=cfg.stage, dataset=cfg.data.name) if cfg.logger.name == "mlflow" else False
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    splits = load_or_prepare(cfg.data)
    datamodule = InMemoryDataModule(splits, cfg.data, seed=cfg.seed)
    # checkpoints record the data config, so evaluation can use the binarization trained with
    datamodule.save_hyperparameters({"data": OmegaConf.to_container(cfg.data, resolve=True)}, logger=False)
    model = build_model(OmegaConf.to_container(cfg.model, resolve=True), OmegaConf.to_container(cfg.net, resolve=True), splits.image_shape)

    checkpoints = ModelCheckpoint(dirpath=output_dir / "checkpoints", filename="best", monitor="val/loss", mode="min", save_last=True)
    history = EpochHistory()
    trainer = build_trainer(cfg, logger, [checkpoints, history, ReseedEachEpoch(cfg.seed)])
    if logger:
        logger.log_hyperparams(tracking.flatten(OmegaConf.to_container(cfg, resolve=True)))
    last = output_dir / "checkpoints" / "last.ckpt"
    if last.exists():
        log.info("resuming from %s", last)
    trainer.fit(torch.compile(model) if cfg.compile else model, datamodule=datamodule, ckpt_path=last if last.exists() else None)

    metrics = {name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("val/")}
    metrics["best/val_loss"] = float(checkpoints.best_model_score) if checkpoints.best_model_score is not None else float("nan")
    metrics["epochs"] = float(trainer.current_epoch)
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", metrics)
        history.write_csv(output_dir / "history.csv")
        config_text = OmegaConf.to_yaml(cfg, resolve=True)
        write_atomic(output_dir / "config.yaml", lambda tmp: tmp.write_text(config_text))
        figure = save_reconstruction_figure(model.eval(), datamodule.tensors["test"][0][:N_FIGURE_IMAGES], output_dir / "reconstructions.png")
        if logger:
            for artifact in (output_dir / "config.yaml", output_dir / "metrics.json", output_dir / "history.csv", figure):
                logger.experiment.log_artifact(logger.run_id, str(artifact))
    return metrics
