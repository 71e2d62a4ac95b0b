"""What a run shows while it trains (`trainer.progress`): Lightning's live bar on a terminal, and
where the output is not a terminal (`dvc repro`, a log file, CI) one line per epoch, at most one
every `LINE_INTERVAL_S` seconds and at least one every `LINE_INTERVAL_S` seconds plus a batch;
nothing with `none`. A stage that trains several models (the anomaly stage's classes) prints a
line as each starts (`announce`)."""

import math
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

from aevae.config.schemas import Progress
from aevae.run.logs import duration

LINE_INTERVAL_S = 15.0  # the most frequent line; a dvc repro log shows one at least every 15 s + a batch


def resolve(mode: Progress | str) -> Progress:
    """`mode`, with `auto` made `bar` when stdout is a terminal and `lines` otherwise."""
    mode = Progress(mode)
    if mode == Progress.auto:
        return Progress.bar if sys.stdout.isatty() else Progress.lines
    return mode


def progress_bar(mode: Progress | str, name: str) -> ProgressBar | None:
    """The progress callback of `mode` for the training called `name` (None: no progress)."""
    mode = resolve(mode)
    if mode == Progress.bar:
        return RichProgressBar()
    return ProgressLines(name) if mode == Progress.lines else None


class ProgressLines(ProgressBar):
    """Lightning's progress bar as lines: `<name> epoch <e>/<n> [step <s>/<m>] <metric> <value> eta <t>`,
    printed by rank 0 at the end of an epoch (validation included) or within an epoch, once
    `interval_s` have passed since the last line; the first and the last epoch always. The eta
    extrapolates this process's pace over the epochs it has left (a resumed run counts from its
    checkpoint)."""

    def __init__(self, name: str, interval_s: float = LINE_INTERVAL_S) -> None:
        super().__init__()
        self.name, self.interval_s = name, interval_s
        self.enabled = True
        self._started = self._printed = 0.0
        self._first_epoch = 0

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = self._printed = time.monotonic()
        self._first_epoch = trainer.current_epoch

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if time.monotonic() - self._printed >= self.interval_s:
            self.show(trainer, trainer.current_epoch + (batch_idx + 1) / self.total_train_batches, f" step {batch_idx + 1}/{self.total_train_batches}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch - 1 == self._first_epoch or epoch == trainer.max_epochs or time.monotonic() - self._printed >= self.interval_s:
            self.show(trainer, epoch)

    def show(self, trainer: L.Trainer, done: float, step: str = "") -> None:
        """Print the line at `done` epochs (a fraction within one: the epoch in progress)."""
        if not self.enabled:
            return
        now = time.monotonic()
        self._printed = now
        left = eta(now - self._started, done - self._first_epoch, trainer.max_epochs - self._first_epoch)
        self.print(line(self.name, math.ceil(done), trainer.max_epochs, step, headline_metric(trainer.callback_metrics, "train/loss_step" if step else "val/loss"), left), flush=True)


def headline_metric(metrics: dict[str, Any], first: str) -> str:
    """` val/loss 109.3`: the metric `first`, else `val/loss`, else the first other `val/` metric,
    else the first `train/` one; empty before any is known."""
    names = sorted(metrics, key=lambda name: (name != first, name != "val/loss", not name.startswith("val/"), name))
    shown = [name for name in names if name.startswith(("val/", "train/"))][:1]
    return "".join(f" {name} {float(metrics[name]):.4g}" for name in shown)


def eta(elapsed_s: float, done: float, total: float) -> float | None:
    """Seconds left when `done` of `total` units took `elapsed_s` (None when unknown)."""
    return elapsed_s / done * (total - done) if done > 0 and total > 0 else None


def line(name: str, epoch: int, epochs: int, step: str, metric: str, left_s: float | None) -> str:
    """`train/vae epoch 12/80 val/loss 109.3 eta 1m40s` (epochs 1-based; `-1` epochs: unbounded)."""
    of = f"/{epochs}" if epochs and epochs > 0 else ""
    return f"{name} epoch {epoch}{of}{step}{metric} eta {duration(left_s) if left_s is not None else '?'}"


def announce(mode: Progress | str, what: str, index: int, total: int, started: float) -> None:
    """As item `index` (1-based) of `total` starts, `<what> <index>/<total> eta <t>`
    (`anomaly/ae class 3/10 eta 4m10s`, the eta from the items done since `started`, a
    `time.monotonic()`); nothing with `none`."""
    if resolve(mode) != Progress.none:
        left = eta(time.monotonic() - started, index - 1, total)
        print(f"{what} {index}/{total} eta {duration(left) if left is not None else '?'}", flush=True)
