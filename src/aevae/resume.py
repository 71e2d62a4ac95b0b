"""Resuming an interrupted training, only from checkpoints of the same run configuration."""

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from aevae.io import write_json

log = logging.getLogger(__name__)

RUN_FILE = "run.json"  # beside the checkpoints: the fingerprint and MLflow run they belong to


def fingerprint(cfg: Any) -> dict[str, Any]:
    """What a checkpoint must share with the current config to be resumed: data (and the prepared
    file's content), model, net and seed. Trainer settings such as max_epochs may change."""
    prepared = cfg.data.prepared
    return {
        "config": OmegaConf.to_container(OmegaConf.masked_copy(cfg, ["data", "model", "net", "seed"]), resolve=True),
        "prepared_md5": hashlib.md5(Path(prepared).read_bytes()).hexdigest() if prepared else None,
    }


def find_resumable(checkpoint_dir: Path, current: dict[str, Any]) -> tuple[Path | None, str | None]:
    """(last checkpoint, its MLflow run id) when `checkpoint_dir` holds an unfinished run of
    `current`. Other checkpoints (another configuration, or a finished run) are removed, so that
    a changed config or a re-run starts afresh.
    """
    last, run_file = checkpoint_dir / "last.ckpt", checkpoint_dir / RUN_FILE
    if not last.exists():
        return None, None
    recorded = json.loads(run_file.read_text()) if run_file.exists() else {}
    if recorded.get("fingerprint") == current and not recorded.get("finished"):
        log.info("resuming from %s", last)
        return last, recorded.get("mlflow_run_id")
    log.warning("%s holds checkpoints of a finished run or another configuration; starting afresh", checkpoint_dir)
    shutil.rmtree(checkpoint_dir)
    return None, None


def record_run(checkpoint_dir: Path, current: dict[str, Any], mlflow_run_id: str | None, finished: bool) -> None:
    """Note which configuration and MLflow run the checkpoints in `checkpoint_dir` belong to."""
    record = {"fingerprint": current, "mlflow_run_id": mlflow_run_id, "finished": finished}
    write_json(checkpoint_dir / RUN_FILE, record)
