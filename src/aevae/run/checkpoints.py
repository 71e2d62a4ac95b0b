"""Checkpoints that survive a kill or a full disk: written beside their place, synced and then
renamed into it (a reader sees the old file or the new one, never half of one); a checkpoint
that cannot be read is set aside rather than trusted or deleted."""

import io
import logging
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins import TorchCheckpointIO

from aevae.errors import DataError
from aevae.io import write_atomic

log = logging.getLogger(__name__)

CORRUPT_SUFFIX = ".corrupt"
DATAMODULE_HPARAMS = "datamodule_hyper_parameters"  # where a training records its data config (`stages.train`)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, each file written to a temporary file in the same folder,
    fsynced and renamed into place (`aevae.io.write_atomic`). torch.save goes to a buffer first,
    so the archive's inner name, and with it the file's bytes, does not depend on the file name."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint's contents, read with weights_only=True (nothing in the file is executed);
    DataError naming the file when it is missing or is not a readable checkpoint (it is never
    retried unsafely, and torch's advice to do so is not passed on)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: checkpoint not found (train the model first)") from exc
    except Exception as exc:  # noqa: BLE001 - truncated, corrupt or not a checkpoint
        raise DataError(f"{path}: not a readable checkpoint (truncated, corrupt or not written by aevae); train it again") from exc
    if not (isinstance(state, dict) and "state_dict" in state and "hyper_parameters" in state):
        raise DataError(f"{path}: not a readable checkpoint (it holds no model written by aevae); train it again")
    return state


def trained_data_config(state: dict[str, Any]) -> dict[str, Any] | None:
    """The data config a checkpoint's model was trained with (`state`: `read_checkpoint`'s), or
    None when the checkpoint records none."""
    return state.get(DATAMODULE_HPARAMS, {}).get("data")


def readable(path: Path) -> bool:
    """Whether `path` loads as a checkpoint (weights only: nothing in it is executed)."""
    try:
        read_checkpoint(path)
    except DataError:
        return False
    return True


def set_aside(path: Path) -> Path:
    """Rename an unreadable checkpoint to `<name>.corrupt` (kept for inspection), with one
    warning line naming both."""
    target = path.with_name(path.name + CORRUPT_SUFFIX)
    os.replace(path, target)
    log.warning("%s could not be read (truncated or corrupt); moved to %s", path, target)
    return target
