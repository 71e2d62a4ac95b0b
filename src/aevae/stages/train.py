"""The train stage: one model from a config; checkpoints, metrics, history and an MLflow run.

Re-running with the same `output_dir` resumes from `checkpoints/last.ckpt` (or, when that cannot
be read, from `best.ckpt`) when the checkpoint belongs to the same data/model/net/seed, in a new
MLflow run that takes over the interrupted one: the checkpoint's epochs are logged into it once
and the interrupted run is deleted, so every epoch appears once (see `aevae.run.resume`).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import MISSING, OmegaConf

from aevae.config import DataConfig, LoggerConfig, TrainerConfig, validate
from aevae.data import InMemoryDataModule
from aevae.errors import require
from aevae.io import plain
from aevae.models import build_model, model_class
from aevae.models.losses import resolve_likelihood
from aevae.nets import NETS
from aevae.records import tracking
from aevae.records.mlflow_model import log_trained_model
from aevae.run import resume
from aevae.run.callbacks import EpochHistory, FitOutputs, RelocatableCheckpoint, ReseedEachEpoch
from aevae.run.checkpoints import AtomicCheckpointIO
from aevae.run.devices import check_accelerator, resolve_precision
from aevae.run.ownership import own_folder
from aevae.run.progress import progress_bar
from aevae.run.ranks import is_rank_zero
from aevae.stages.codes import load_data
from aevae.stages.common import log_summary, open_stage_run, print_summary, run_name


@dataclass
class TrainConfig:
    data: DataConfig = MISSING
    # Typed by the chosen group option's schema (`model/<name>_schema`, `net/<name>_schema`); a
    # field typed with a base class here would retype the node when anomaly.yaml extends train.
    model: Any = MISSING
    net: Any = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = MISSING
    output_dir: str = MISSING
    stage: str = MISSING  # recorded in MLflow tags and run names
    objective: str = MISSING  # the metric returned to a Hydra sweeper
    compile: bool = MISSING  # torch.compile the model's loss (`BaseAutoencoder.compile_loss`)

    def __post_init__(self) -> None:
        schema = model_class(self.model.name).config_class  # ConfigError on an unknown kind
        require(isinstance(self.model, schema), "model", f"not a {schema.__name__}")
        require(self.net.name in NETS, "net.name", f"unknown net {self.net.name!r}; expected one of {', '.join(NETS)}")
        require(isinstance(self.net, NETS[self.net.name]), "net", f"not a {NETS[self.net.name].__name__}")
        self.model.check_optimization(self.trainer.max_epochs)


def build_trainer(trainer_cfg: TrainerConfig, output_dir: str | Path, logger: Any, callbacks: list[L.Callback], name: str) -> L.Trainer:
    """A Lightning Trainer from the `trainer` config node, its progress shown under `name`
    (`trainer.progress`) and its precision resolved (`auto`); checkpoints written atomically."""
    kwargs = plain(trainer_cfg)
    bar = progress_bar(kwargs.pop("progress"), name)
    kwargs["precision"] = resolve_precision(kwargs["precision"], kwargs["accelerator"])
    return L.Trainer(
        **kwargs, enable_progress_bar=bar is not None, logger=logger, callbacks=[*callbacks, *([bar] if bar else [])],
        plugins=[AtomicCheckpointIO()], default_root_dir=str(output_dir),
    )


def run(cfg: TrainConfig, parent: str | None = None) -> dict[str, float]:
    """Train the model of `cfg` (its MLflow run nested under `parent` if given); write
    checkpoints, metrics.json, history.csv, config.yaml and reconstructions.png under
    `cfg.output_dir`, which this process owns while it trains. A training whose finished outputs
    there match `cfg` exactly is not redone. Returns the final validation metrics."""
    cfg = validate(cfg)
    check_accelerator(cfg.trainer.accelerator)
    output_dir = Path(cfg.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    metrics_file = output_dir / "metrics.json"
    with own_folder(output_dir):
        resume.check_owner(checkpoint_dir, cfg.model.label)
        splits = load_data(cfg.data)  # every input loads before anything of a previous run is removed
        # `model.likelihood: auto` becomes the data kind's likelihood in everything written and logged
        cfg.model.likelihood = resolve_likelihood(cfg.model.likelihood, splits.image_shape)
        params = plain(cfg)
        config_yaml = OmegaConf.to_yaml(params)
        fingerprint = resume.fingerprint(params)
        if resume.finished_as_configured(output_dir, config_yaml, fingerprint):
            metrics = json.loads(metrics_file.read_text())
            log_summary(f"{run_name(cfg.logger, cfg.stage, cfg.model.label)} already trained as configured", metrics)
            return metrics
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = InMemoryDataModule(splits, cfg.data, seed=cfg.seed)
        # checkpoints record the data config, so evaluation can use the binarization trained with
        datamodule.save_hyperparameters({"data": params["data"]}, logger=False)
        model = build_model(cfg.model, cfg.net, splits.image_shape)
        owner = is_rank_zero()  # the other ranks of a multi-process training only read the folder
        resumable = resume.find_resumable(checkpoint_dir, fingerprint, cfg.trainer.max_epochs, clear=owner)
        if owner:
            metrics_file.unlink(missing_ok=True)  # written again when this run ends

        with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.data.name, label=cfg.model.label, parent=parent, params=params) as mlflow_run:
            mlflow_run.take_over(resumable.run_id, resumable.history)  # the resumed epochs, logged once
            callbacks = [
                RelocatableCheckpoint(dirpath=checkpoint_dir, filename="best", monitor="val/loss", mode="min", save_last=True),
                EpochHistory(),
                ReseedEachEpoch(cfg.seed),
                FitOutputs(output_dir, config_yaml, fingerprint, mlflow_run.run_id),
            ]
            name = run_name(cfg.logger, cfg.stage, cfg.model.label)
            trainer = build_trainer(cfg.trainer, output_dir, tracking.attach_lightning_logger(mlflow_run), callbacks, name)
            if owner:
                resume.record_run(checkpoint_dir, fingerprint, mlflow_run.run_id, finished=False, label=cfg.model.label)
            if cfg.compile:
                model.compile_loss()
            trainer.fit(model, datamodule=datamodule, ckpt_path=resumable.checkpoint)
            trainer.strategy.barrier()  # rank 0 writes the outputs when fitting ends; every rank decides alike
            if not trainer.strategy.broadcast(metrics_file.exists()):  # resumed after the last epoch: validate to write them
                trainer.validate(model, datamodule=datamodule, verbose=False)
            metrics = json.loads(metrics_file.read_text())
            log_trained_model(mlflow_run, checkpoint_dir / "best.ckpt", datamodule.split("test")[0], cfg.data.eval_batch_size)
    title = f"{run_name(cfg.logger, cfg.stage, cfg.model.label)} done"
    if parent is None:
        print_summary(title, metrics, output_dir, mlflow_run)
    else:  # one of a stage's runs (an anomaly class): the stage prints the summary
        log_summary(title, metrics)
    return metrics
