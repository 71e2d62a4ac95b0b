"""The classifier stage: the classifier that judges generated images (sample quality), trained
once on the training split's labels (as many classes as the data have); its test accuracy says
how far its judgement can be trusted. Data without labels get none: the stage says so in one line
and writes empty outputs, and the evaluate stage measures no classifier-based metric."""

import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from omegaconf import MISSING

from aevae.config import DataConfig, LoggerConfig, TrainerConfig, validate
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.io import write_json
from aevae.models.classifier import ClassifierConfig, DigitClassifier
from aevae.records import tracking
from aevae.records.mlflow_model import log_trained_model
from aevae.run.callbacks import RelocatableCheckpoint
from aevae.run.devices import check_accelerator
from aevae.stages.common import open_stage_run, print_summary, run_name
from aevae.stages.data_facts import n_classes, skipped
from aevae.stages.train import build_trainer

log = logging.getLogger(__name__)

CHECKPOINT = "best"  # <output_dir>/checkpoints/best.ckpt: the epoch of the best validation accuracy


@dataclass
class ClassifierStageConfig:
    data: DataConfig = MISSING
    classifier: ClassifierConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = MISSING
    output_dir: str = MISSING
    stage: str = MISSING


def run(cfg: ClassifierStageConfig) -> dict[str, float]:
    """Train the classifier of `cfg`; write `checkpoints/best.ckpt` and `metrics.json`
    (`classifier/val/accuracy`, `classifier/test/accuracy`) under `cfg.output_dir`; on data
    without labels, an empty `checkpoints/` and `{}`."""
    cfg = validate(cfg)
    check_accelerator(cfg.trainer.accelerator)
    output_dir = Path(cfg.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    splits = load_or_prepare(cfg.data)
    if "classifier" in skipped(splits):
        log.warning("%s: %s", cfg.stage, skipped(splits)["classifier"])
        (output_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_json(output_dir / "metrics.json", {})
        return {}
    datamodule = InMemoryDataModule(splits, cfg.data, seed=cfg.seed)
    model = DigitClassifier(cfg.classifier, list(splits.image_shape), n_classes(splits))
    with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.data.name) as mlflow_run:
        checkpoint = RelocatableCheckpoint(dirpath=output_dir / "checkpoints", filename=CHECKPOINT, monitor="val/accuracy", mode="max")
        trainer = build_trainer(cfg.trainer, output_dir, tracking.attach_lightning_logger(mlflow_run), [checkpoint], run_name(cfg.logger, cfg.stage))
        trainer.fit(model, datamodule=datamodule)
        (tested,) = trainer.test(model, datamodule=datamodule, ckpt_path=checkpoint.best_model_path, verbose=False)
        metrics = {
            "classifier/val/accuracy": float(checkpoint.best_model_score),
            "classifier/test/accuracy": float(tested["test/accuracy"]),
        }
        mlflow_run.log_metrics(metrics)
        mlflow_run.log_artifact(write_json(output_dir / "metrics.json", metrics))
        log_trained_model(mlflow_run, checkpoint.best_model_path, datamodule.split("test")[0], cfg.data.eval_batch_size)
    print_summary(f"{cfg.stage} done", metrics, output_dir, mlflow_run)
    return metrics
