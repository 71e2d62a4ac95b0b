"""Where the project lives: the directory that relative stores and paths resolve against."""

import os
from pathlib import Path

DVC_TEMP_DIR = f"{os.sep}.dvc{os.sep}tmp{os.sep}"


def project_root(cwd: Path | None = None) -> Path:
    """The working directory, or, inside a workspace that DVC made for a queued or temporary
    experiment (`<project>/.dvc/tmp/...`), the project that holds it: such workspaces are thrown
    away, so what must outlive them (the MLflow store) belongs to the project."""
    cwd = (cwd or Path.cwd()).resolve()
    text = str(cwd)
    return Path(text.split(DVC_TEMP_DIR, 1)[0]) if DVC_TEMP_DIR in text else cwd


def best_checkpoint(model_dir: str | Path) -> Path:
    """The checkpoint that a training in `model_dir` keeps as its best (what later stages read)."""
    return Path(model_dir) / "checkpoints" / "best.ckpt"
