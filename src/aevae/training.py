"""Train one model from a config: data, model, trainer, checkpoints, metrics and MLflow logging."""

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf

from aevae import resume, tracking
from aevae import distributed  # noqa: F401  registers the DDP strategy of conf/trainer/ddp*.yaml
from aevae.callbacks import EpochHistory, ReseedEachEpoch
from aevae.config import validate_train
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.evaluation.figures import save_image_rows
from aevae.io import write_atomic, write_json
from aevae.models import BaseAutoencoder, build_model

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

    Re-running with the same output_dir resumes from `checkpoints/last.ckpt` into the same MLflow
    run, when the checkpoint belongs to the same data/model/net/seed (see `aevae.resume`).
    """
    validate_train(cfg)
    output_dir = Path(cfg.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    run_fingerprint = resume.fingerprint(cfg)
    last_checkpoint, run_id = resume.find_resumable(checkpoint_dir, run_fingerprint)
    logger = False
    if cfg.logger.name == "mlflow" and rank_zero_only.rank == 0:  # ranks started by torchrun open no run
        name = f"{cfg.stage}-{cfg.model.name}-{cfg.net.name}-{cfg.data.name}"
        logger = tracking.mlflow_logger(cfg.logger, stage=cfg.stage, dataset=cfg.data.name, default_run_name=name, run_id=run_id)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    splits = load_or_prepare(cfg.data)
    datamodule = InMemoryDataModule(splits, cfg.data, seed=cfg.seed)
    # checkpoints record the data config, so evaluation can use the binarization trained with
    datamodule.save_hyperparameters({"data": OmegaConf.to_container(cfg.data, resolve=True)}, logger=False)
    model = build_model(OmegaConf.to_container(cfg.model, resolve=True), OmegaConf.to_container(cfg.net, resolve=True), splits.image_shape)

    checkpoints = ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor="val/loss", mode="min", save_last=True)
    history = EpochHistory()
    trainer = build_trainer(cfg, logger, [checkpoints, history, ReseedEachEpoch(cfg.seed)])
    if trainer.is_global_zero:
        resume.record_run(checkpoint_dir, run_fingerprint, logger.run_id if logger else None, finished=False)
        if logger and last_checkpoint is None:
            logger.log_hyperparams(tracking.flatten(OmegaConf.to_container(cfg, resolve=True)))
    trainer.fit(torch.compile(model) if cfg.compile else model, datamodule=datamodule, ckpt_path=last_checkpoint)

    if not any(name.startswith("val/") for name in trainer.callback_metrics):  # resumed after the last epoch
        trainer.validate(model, datamodule=datamodule, verbose=False)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("val/")}
    metrics["best/val_loss"] = float(checkpoints.best_model_score) if checkpoints.best_model_score is not None else float("nan")
    metrics["epochs"] = float(trainer.current_epoch)
    if trainer.is_global_zero:
        resume.record_run(checkpoint_dir, run_fingerprint, logger.run_id if logger else None, finished=True)
        write_json(output_dir / "metrics.json", metrics)
        history.write_csv(output_dir / "history.csv")
        config_text = OmegaConf.to_yaml(cfg, resolve=True)
        write_atomic(output_dir / "config.yaml", lambda tmp: tmp.write_text(config_text))
        figure = save_reconstruction_figure(model.eval(), datamodule.split("test")[0][:N_FIGURE_IMAGES], output_dir / "reconstructions.png")
        if logger:
            for artifact in (output_dir / "config.yaml", output_dir / "metrics.json", output_dir / "history.csv", figure):
                logger.experiment.log_artifact(logger.run_id, str(artifact))
    return metrics
