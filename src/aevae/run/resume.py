"""Resuming an interrupted training, only from readable checkpoints of the same run
configuration, and only into a folder that holds the same model."""

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from aevae.run.checkpoints import readable, set_aside
from aevae.run.code_deps import source_md5
from aevae.errors import ConfigError
from aevae.io import write_json

log = logging.getLogger(__name__)

RUN_FILE = "run.json"  # beside the checkpoints: the model, fingerprint and MLflow run they belong to
HISTORY_STATE = "EpochHistory"  # the epoch history's key among a checkpoint's callback states


class Resumable(NamedTuple):
    checkpoint: Path | None = None  # what to resume from; None: start afresh
    run_id: str | None = None  # the interrupted run's MLflow run
    history: list[dict[str, float]] = []  # the epochs the checkpoint has done, as logged


def fingerprint(params: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint must share with the current run to be resumed or trusted: data (and the
    prepared file's content), model, net, seed and the code, from the run's config as plain
    values (`params`). Trainer settings such as max_epochs may change."""
    prepared = params["data"]["prepared"]
    return {
        "code_md5": source_md5(),
        "config": {key: params[key] for key in ("data", "model", "net", "seed")},
        "prepared_md5": hashlib.md5(Path(prepared).read_bytes()).hexdigest() if prepared else None,
    }


def recorded(checkpoint_dir: Path) -> dict[str, Any]:
    run_file = checkpoint_dir / RUN_FILE
    return json.loads(run_file.read_text()) if run_file.is_file() else {}


def check_owner(checkpoint_dir: Path, label: str) -> None:
    """Refuse to train model `label` into a folder whose checkpoints belong to another model."""
    owner = recorded(checkpoint_dir).get("label") or recorded(checkpoint_dir).get("fingerprint", {}).get("config", {}).get("model", {}).get("label")
    if owner and owner != label:
        raise ConfigError(f"output_dir: {checkpoint_dir.parent} holds the checkpoints of model {owner!r}, not {label!r}; choose another output_dir or delete that folder")


def finished_as_configured(output_dir: Path, config_yaml: str, current: dict[str, Any]) -> bool:
    """Whether `output_dir` holds a finished training of exactly this config and code
    (`current`: its fingerprint), with readable outputs."""
    config, best = output_dir / "config.yaml", output_dir / "checkpoints" / "best.ckpt"
    record = recorded(output_dir / "checkpoints")
    return (
        record.get("finished", False)
        and record.get("fingerprint") == current
        and (output_dir / "metrics.json").is_file()
        and config.is_file()
        and config.read_text() == config_yaml
        and readable(best)
    )


def find_resumable(checkpoint_dir: Path, current: dict[str, Any], max_epochs: int, *, clear: bool) -> Resumable:
    """How to go on from `checkpoint_dir`: its last checkpoint when it holds an unfinished run of
    `current` (an unreadable `last.ckpt` is passed over for `best.ckpt`), else afresh. Raises
    ConfigError when the checkpoint has done more epochs than `max_epochs`.

    With `clear` (rank 0, or the only process) checkpoints of another configuration or of a
    finished run are removed and an unreadable one is set aside; the other ranks of a training
    only read, and come to the same answer whenever they look: rank 0's removals leave a folder
    that reads as "afresh", and it records the new run (`record_run`) only once they are done."""
    record = recorded(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return Resumable()
    if record.get("fingerprint") != current or record.get("finished"):
        if clear:
            log.info("%s holds checkpoints of a finished run or another configuration; starting afresh", checkpoint_dir)
            shutil.rmtree(checkpoint_dir)
        return Resumable()
    for name in ("last.ckpt", "best.ckpt"):
        path = checkpoint_dir / name
        if not path.exists():
            continue
        if not readable(path):
            if clear:
                set_aside(path)
            continue
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("epoch", 0) + 1 > max_epochs:
            raise ConfigError(f"trainer.max_epochs: {path} has done {state['epoch'] + 1} epochs, more than max_epochs={max_epochs}; raise it, or delete {checkpoint_dir} to start afresh")
        log.info("resuming from %s", path)
        history = state.get("callbacks", {}).get(HISTORY_STATE, {}).get("rows", [])
        return Resumable(path, record.get("mlflow_run_id"), list(history))
    log.warning("%s: no readable checkpoint to resume from; starting afresh", checkpoint_dir)
    return Resumable(None, record.get("mlflow_run_id"), [])


def record_run(checkpoint_dir: Path, current: dict[str, Any], mlflow_run_id: str | None, finished: bool, label: str | None = None) -> None:
    """Note which model, configuration and MLflow run the checkpoints in `checkpoint_dir` belong to."""
    label = label or current["config"]["model"].get("label")
    write_json(checkpoint_dir / RUN_FILE, {"fingerprint": current, "label": label, "mlflow_run_id": mlflow_run_id, "finished": finished})
