"""Lightning callbacks of the training loop."""

from pathlib import Path

import lightning as L
import torch

from aevae.io import write_csv


class ReseedEachEpoch(L.Callback):
    """Seed torch's RNG with (seed, epoch) at every epoch start.

    Each epoch's randomness (reparameterization noise, input corruption, dynamic binarization)
    then depends only on the seed and the epoch, so a run resumed from an epoch checkpoint ends
    exactly where an uninterrupted run does.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(self.seed * 1_000_003 + trainer.current_epoch + 1)


class EpochHistory(L.Callback):
    """Keeps the epoch-level metrics (train/* and val/*) of every epoch, for a CSV plot file."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": float(trainer.current_epoch), "step": float(trainer.global_step)}
        for name, value in sorted(trainer.callback_metrics.items()):
            if name.startswith("val/") or name.endswith("_epoch"):
                row[name.removesuffix("_epoch")] = float(value)
        self.rows.append(row)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict["rows"])

    def write_csv(self, path: str | Path) -> Path:
        """Write the history as CSV (one row per epoch), atomically."""
        return write_csv(path, self.rows)
