"""Lightning callbacks of the training loop: per-epoch reseeding, the epoch history, and the
outputs written on rank 0 when fitting ends (so any strategy, `ddp_spawn` included, writes them)."""

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from aevae.run import resume
from aevae.io import write_atomic, write_csv, write_json
from aevae.run.logs import quiet_libraries
from aevae.reporting.plots import as_pictures, save_image_rows

N_FIGURE_IMAGES = 10


PLATEAU_EPOCHS = 3  # whether validation loss has levelled off is judged over the last epochs


def loss_drop_per_epoch(losses: list[float], window: int = PLATEAU_EPOCHS) -> float:
    """How much the loss fell per epoch over the last `window` epochs (over all of them when
    there are fewer); 0 for a single epoch. Near 0: levelled off; positive: still falling."""
    if len(losses) < 2:
        return 0.0
    span = min(window, len(losses) - 1)
    return (losses[-1 - span] - losses[-1]) / span


LEVELLED_OFF_PERCENT = 0.1  # validation loss has levelled off when it falls by less than this % of itself per epoch


def plateau_metrics(losses: list[float]) -> dict[str, float]:
    """Whether validation loss was still falling when training ended: `val/loss_drop_per_epoch`,
    the same as a percentage of the final loss, and `val/levelled_off` (1.0 when that percentage
    is below `LEVELLED_OFF_PERCENT`, else 0.0; 0.0 after a single epoch, which shows no trend)."""
    drop = loss_drop_per_epoch(losses)
    percent = 100.0 * drop / abs(losses[-1]) if losses and losses[-1] else 0.0
    return {
        "val/loss_drop_per_epoch": drop,
        "val/loss_drop_percent_per_epoch": percent,
        "val/levelled_off": float(len(losses) > 1 and percent < LEVELLED_OFF_PERCENT),
    }


class RelocatableCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint whose saved state holds its paths relative to its directory, so that a
    checkpoint's bytes do not depend on where the project is checked out (DVC hashes them).
    Loading makes them absolute again, so resuming keeps the best model's path and score.
    A file of the same name left by an earlier training is replaced, not kept beside a `-v1`
    copy: the folder holds one `best.ckpt`, the one this training chose."""

    PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs, enable_version_counter=False)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        relative = lambda path: os.path.relpath(path, self.dirpath) if path else path  # noqa: E731
        return state | {key: relative(state[key]) for key in self.PATH_KEYS} | {
            "dirpath": ".",
            "best_k_models": {relative(path): score for path, score in state["best_k_models"].items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        absolute = lambda path: os.path.join(self.dirpath, path) if path else path  # noqa: E731
        state = dict(state_dict) | {key: absolute(state_dict.get(key, "")) for key in self.PATH_KEYS}
        state["dirpath"] = self.dirpath
        state["best_k_models"] = {absolute(path): score for path, score in state_dict.get("best_k_models", {}).items()}
        super().load_state_dict(state)


class ReseedEachEpoch(L.Callback):
    """Seed torch's RNG with (seed, epoch) at every epoch start, and with the seed alone at every
    validation.

    Each epoch's randomness (reparameterization noise, input corruption, dynamic binarization)
    then depends only on the seed and the epoch, so a run resumed from an epoch checkpoint ends
    exactly where an uninterrupted run does. Every validation draws the same noise (common random
    numbers), so a VAE's validation loss changes from epoch to epoch only as the model does: the
    best checkpoint and `val/levelled_off` are not decided by sampling noise. The training RNG's
    state is put back after each validation.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._training_state: torch.Tensor | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(self.seed * 1_000_003 + trainer.current_epoch + 1)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._training_state = torch.get_rng_state()
        torch.manual_seed(self.seed * 1_000_003)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.set_rng_state(self._training_state)


class EpochHistory(L.Callback):
    """Keeps the epoch-level metrics (train/* and val/*) of every epoch, for a CSV plot file."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": float(trainer.current_epoch), "step": float(trainer.global_step)}
        for name, value in sorted(trainer.callback_metrics.items()):
            if name.startswith(("val/", "train/")) and not name.endswith("_step"):  # every epoch-level metric
                row[name.removesuffix("_epoch")] = float(value)
        self.rows.append(row)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict["rows"])


class FitOutputs(L.Callback):
    """On rank 0, once fitting ends (or a validation that stands in for it, when a run resumes
    after its last epoch): `metrics.json`, `history.csv`, `config.yaml`, `reconstructions.png`
    in `output_dir`, the finished resume record, and those files as MLflow artifacts."""

    def __init__(self, output_dir: Path, config_yaml: str, fingerprint: dict[str, Any], run_id: str | None) -> None:
        self.output_dir, self.config_yaml = Path(output_dir), config_yaml
        self.fingerprint, self.run_id = fingerprint, run_id

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        quiet_libraries()  # also in ranks that Lightning spawned

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self.write(trainer, pl_module)

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {name: float(value) for name, value in sorted(trainer.callback_metrics.items()) if name.startswith("val/")}
        if not trainer.is_global_zero or not metrics:
            return
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_score if isinstance(checkpoint, ModelCheckpoint) else None
        metrics["best/val_loss"] = float(best) if best is not None else float("nan")
        metrics["epochs"] = float(trainer.current_epoch)
        history = next(callback for callback in trainer.callbacks if isinstance(callback, EpochHistory))
        metrics |= plateau_metrics([row["val/loss"] for row in history.rows if "val/loss" in row])
        images = trainer.datamodule.split("test")[0][:N_FIGURE_IMAGES].to(pl_module.device)
        with torch.no_grad():
            recon = pl_module.eval().reconstruct(images)
        paths = [
            write_json(self.output_dir / "metrics.json", metrics),
            write_csv(self.output_dir / "history.csv", history.rows),
            write_atomic(self.output_dir / "config.yaml", lambda tmp: tmp.write_text(self.config_yaml)),
            save_image_rows([as_pictures(images), as_pictures(recon)], ["input", "recon"], self.output_dir / "reconstructions.png", title=f"{pl_module.cfg.label} reconstructions"),
        ]
        # a finished record names no MLflow run: the checkpoint directory's bytes depend on the inputs only
        resume.record_run(self.output_dir / "checkpoints", self.fingerprint, None, finished=True)
        if trainer.logger and hasattr(trainer.logger, "run_id"):
            for path in paths:
                trainer.logger.experiment.log_artifact(trainer.logger.run_id, str(path))
