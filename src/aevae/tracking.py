"""MLflow set-up: tracking URI, reachability check, tags, flattened params, run groups."""

import hashlib
import os
import time
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aevae.errors import TrackingError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
MAX_PARAM_LENGTH = 250  # MLflow servers reject or truncate long param values
GROUP_TAG = "aevae.group"
ROLE_TAG = "aevae.role"


def tracking_uri(configured: str | None) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else the project's SQLite store."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the URI, if an HTTP tracking server does not answer its health check."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise TrackingError(f"MLflow tracking server {uri} is unreachable: {exc}") from exc
    elif uri.startswith("sqlite:///"):
        parent = Path(uri.removeprefix("sqlite:///")).parent
        if not parent.is_dir():
            raise TrackingError(f"MLflow tracking store {uri}: directory {parent} does not exist")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"a.b.c": "value"}, values shortened to what MLflow accepts."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def git_commit() -> str | None:
    """The commit of the working directory's git repository, if there is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_tags(stage: str, dataset: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tags that let the MLflow UI filter runs by stage (and DVC stage), data set and code version."""
    tags = {"aevae.stage": stage, "aevae.dataset": dataset, **(extra or {})}
    if os.environ.get("DVC_STAGE"):
        tags["aevae.dvc_stage"] = os.environ["DVC_STAGE"]
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def dvc_pipeline_group() -> str | None:
    """Under DVC, an id shared by the stages of one pipeline state: `repro-<commit>-<params hash>`."""
    if not os.environ.get("DVC_STAGE"):
        return None
    params = Path(os.environ.get("DVC_ROOT", ".")) / "params.yaml"
    digest = hashlib.md5(params.read_bytes()).hexdigest()[:8] if params.exists() else "none"
    return f"repro-{(git_commit() or 'nogit')[:8]}-{digest}"


def experiment_id(client: Any, name: str) -> str:
    """The id of the experiment called `name`, created on first use."""
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def group_parent_run(client: Any, experiment_id: str, group: str) -> str:
    """The id of the parent run of `group`, created on first use.

    Concurrent jobs may both create one; all of them then settle on the oldest parent and the
    others delete their own, so every run of the group nests under a single parent.
    """
    query = f"tags.`{GROUP_TAG}` = '{group}' and tags.`{ROLE_TAG}` = 'parent'"

    def parents() -> list[Any]:
        runs = client.search_runs([experiment_id], filter_string=query, max_results=50)
        return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))

    found = parents()
    if found:
        return found[0].info.run_id
    mine = client.create_run(experiment_id, run_name=group, tags={GROUP_TAG: group, ROLE_TAG: "parent"})
    client.set_terminated(mine.info.run_id)
    winner = parents()[0].info.run_id
    if winner != mine.info.run_id:
        client.delete_run(mine.info.run_id)
    return winner


def _resolved_tags(logger_cfg: Any, uri: str, stage: str, dataset: str) -> dict[str, str]:
    """Run tags, with the group's parent run when the config names a group or DVC runs the stage."""
    tags = run_tags(stage, dataset, logger_cfg.tags)
    group = logger_cfg.group or dvc_pipeline_group()
    if group:
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        tags[GROUP_TAG] = group
        tags["mlflow.parentRunId"] = group_parent_run(client, experiment_id(client, logger_cfg.experiment_name), group)
    return tags


def _run_exists(uri: str, run_id: str) -> bool:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient(uri).get_run(run_id)
    except MlflowException:
        return False
    return True


def mlflow_logger(logger_cfg: Any, *, stage: str, dataset: str, default_run_name: str, run_id: str | None = None) -> Any:
    """A Lightning MLFlowLogger for `logger_cfg`, nested under its group's parent run if any, named
    `logger_cfg.run_name` or else `default_run_name`.

    With the `run_id` of a run in the store, it logs into that run (a resumed training)."""
    from lightning.pytorch.loggers import MLFlowLogger

    uri = tracking_uri(logger_cfg.tracking_uri)
    check_reachable(uri)
    if run_id and _run_exists(uri, run_id):
        return MLFlowLogger(experiment_name=logger_cfg.experiment_name, tracking_uri=uri, run_id=run_id, synchronous=False)
    return MLFlowLogger(
        experiment_name=logger_cfg.experiment_name,
        run_name=logger_cfg.run_name or default_run_name,
        tracking_uri=uri,
        tags=_resolved_tags(logger_cfg, uri, stage, dataset),
        synchronous=False,  # metrics are queued; ending the run flushes them
    )


class StageRun:
    """An MLflow run of a stage that does not train (evaluate, probe, report); no-op when off."""

    def __init__(self, client: Any = None, run_id: str | None = None) -> None:
        self.client, self.run_id = client, run_id

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        if self.client:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.client:
            self.client.log_artifact(self.run_id, str(path), artifact_path)


@contextmanager
def stage_run(logger_cfg: Any, *, stage: str, dataset: str, params: Mapping[str, Any]) -> Iterator[StageRun]:
    """Open an MLflow run for a stage (params logged flattened); it ends FAILED on an exception."""
    if logger_cfg.name == "none":
        yield StageRun()
        return
    from mlflow import MlflowClient
    from mlflow.entities import Param

    uri = tracking_uri(logger_cfg.tracking_uri)
    check_reachable(uri)
    client = MlflowClient(uri)
    tags = _resolved_tags(logger_cfg, uri, stage, dataset)
    run = client.create_run(experiment_id(client, logger_cfg.experiment_name), run_name=logger_cfg.run_name or stage, tags=tags)
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in flatten(params).items()])
    try:
        yield StageRun(client, run.info.run_id)
    except BaseException:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    client.set_terminated(run.info.run_id, status="FINISHED")
