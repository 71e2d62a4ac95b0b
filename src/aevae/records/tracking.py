"""MLflow: one way to open a run (`open_run`), the tracking URI, flattened params, run groups.

Every run of the project is opened here: stage runs, per-class runs nested under their stage's
run, sweep parents, and training runs (Lightning's `MLFlowLogger` attaches to the run by id).
A process opens each store once (`store_client`), and imports MLflow only when it does.
"""

import functools
import hashlib
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aevae.errors import TrackingError

DEFAULT_STORE = "mlflow.db"  # a SQLite file in the project's root
MAX_PARAM_LENGTH = 250  # MLflow servers reject or truncate long param values
GROUP_TAG = "aevae.group"
ROLE_TAG = "aevae.role"
RESUMED_TAG = "aevae.resumed_from"  # a resumed training's run: the interrupted run it replaces
PARENT_TAG = "mlflow.parentRunId"
SQLITE = "sqlite:///"
# MLflow's usage telemetry (a fetch and uploads from its first import) stays off unless a user sets
# MLFLOW_DISABLE_TELEMETRY=false: a run reaches no network beyond its tracking URI
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def tracking_uri(configured: str | None, root: Path) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else `<root>/mlflow.db`; a relative SQLite
    path is taken relative to `root`, not to the working directory."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or f"{SQLITE}{DEFAULT_STORE}"
    if uri.startswith(SQLITE) and not Path(uri.removeprefix(SQLITE)).is_absolute():
        uri = f"{SQLITE}{(root / uri.removeprefix(SQLITE)).resolve()}"
    return uri


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the URI, if an HTTP tracking server does not answer its health check."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise TrackingError(f"MLflow tracking server {uri} is unreachable: {exc}") from exc
    elif uri.startswith(SQLITE):
        parent = Path(uri.removeprefix(SQLITE)).parent
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


def repro_group(params: Path) -> str:
    """The run group of a `dvc repro` of the pipeline state: `repro-<commit>-<params.yaml hash>`."""
    digest = hashlib.md5(params.read_bytes()).hexdigest()[:8] if params.exists() else "none"
    return f"repro-{(git_commit() or 'nogit')[:8]}-{digest}"


def artifact_location(uri: str) -> str | None:
    """Where a SQLite store keeps artifacts: beside the database file (`mlartifacts/`), not in the
    working directory; None (the server's choice) for other stores."""
    return (Path(uri.removeprefix(SQLITE)).parent / "mlartifacts").as_uri() if uri.startswith(SQLITE) else None


def create_sqlite_store(uri: str) -> None:
    """Create a missing SQLite store whole: the schema is built in a draft file beside it, which is
    then hard-linked into place, so processes that start together (parallel sweep jobs, queued DVC
    experiments) never build the tables at once; a process that loses the race drops its draft."""
    path = Path(uri.removeprefix(SQLITE))
    if path.exists():
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    handle, draft = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".draft", dir=path.parent)
    os.close(handle)
    try:
        SqlAlchemyStore(f"{SQLITE}{draft}", artifact_location(uri)).engine.dispose()
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(draft)


def experiment_id(client: Any, name: str, uri: str) -> str:
    """The id of the experiment called `name`, created on first use (by whichever process of
    several gets there first)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(uri))
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def group_parent_run(client: Any, experiment: str, group: str) -> str:
    """The id of the parent run of `group`, created on first use.

    Concurrent jobs may both create one; all of them then settle on the oldest parent and the
    others delete their own, so every run of the group nests under a single parent.
    """
    query = f"tags.`{GROUP_TAG}` = '{group}' and tags.`{ROLE_TAG}` = 'parent'"

    def parents() -> list[Any]:
        runs = client.search_runs([experiment], filter_string=query, max_results=50)
        return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))

    found = parents()
    if found:
        return found[0].info.run_id
    mine = client.create_run(experiment, run_name=group, tags={GROUP_TAG: group, ROLE_TAG: "parent"})
    client.set_terminated(mine.info.run_id)
    winner = parents()[0].info.run_id
    if winner != mine.info.run_id:
        client.delete_run(mine.info.run_id)
    return winner


@dataclass
class Run:
    """An open MLflow run; every method does nothing when tracking is off (`client` None)."""

    client: Any = None
    run_id: str | None = None
    experiment_id: str | None = None
    uri: str | None = None

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        if self.client:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.client:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def take_over(self, interrupted: str | None, history: list[Mapping[str, float]]) -> None:
        """Continue an interrupted training's run: log the epochs its checkpoint has done, each
        point at the step the interrupted run had it, once (that run's points up to the
        checkpoint's last step, per-step ones included; an epoch it lacks, from the checkpoint's
        `history`), tag where they came from, and delete the interrupted run, which may hold
        epochs past the checkpoint (soft delete: `mlflow.MlflowClient().restore_run` brings it back)."""
        if not self.client or not (interrupted or history):
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        last = int(history[-1]["step"]) - 1 if history else -1  # Lightning logs an epoch's metrics at its last batch's step
        copied = self.points_until(interrupted, last) if interrupted and interrupted != self.run_id else []
        points = [Metric(point.key, point.value, point.timestamp, point.step) for point in copied]
        have = {(point.key, point.step) for point in points}
        logged_as = {"train/loss": "train/loss_epoch"}  # the history drops the `_epoch` Lightning logs it with
        for row in history:
            step = int(row["step"]) - 1
            points += [Metric(logged_as.get(name, name), float(value), now, step) for name, value in row.items() if name != "step" and (logged_as.get(name, name), step) not in have]
        for start in range(0, len(points), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=points[start : start + 1000])
        if interrupted and interrupted != self.run_id:
            self.client.set_tag(self.run_id, RESUMED_TAG, interrupted)
            try:
                self.client.delete_run(interrupted)
            except Exception:  # noqa: BLE001 - already deleted, or in another store: nothing to take over
                pass

    def points_until(self, run_id: str, last: int) -> list[Any]:
        """Every metric point of run `run_id` at a step up to `last` (none when it is not in this store)."""
        try:
            names = self.client.get_run(run_id).data.metrics
            return [point for name in names for point in self.client.get_metric_history(run_id, name) if point.step <= last]
        except Exception:  # noqa: BLE001 - deleted for good, or in another store: the history stands in
            return []

    def parent(self) -> "Run":
        """The run this one is nested under (a no-op run when there is none)."""
        parent_id = self.client.get_run(self.run_id).data.tags.get(PARENT_TAG) if self.client else None
        return Run(self.client, parent_id, self.experiment_id, self.uri) if parent_id else Run()

    def runs_url(self, ui: str = "http://127.0.0.1:5000") -> str | None:
        """The classic runs table of the run's experiment (MLflow 3 opens an experiment on its
        GenAI overview; training runs are under `#/experiments/<id>/runs`)."""
        if not self.client:
            return None
        base = self.uri if self.uri and self.uri.startswith(("http://", "https://")) else ui
        return f"{base.rstrip('/')}/#/experiments/{self.experiment_id}/runs"


@functools.cache
def store_client(uri: str) -> Any:
    """The process's one `MlflowClient` of the store `uri` (a missing SQLite store is created
    first): every run of a process (a stage's, its nested runs, a sweep's parent) shares it."""
    from mlflow import MlflowClient

    if uri.startswith(SQLITE):
        create_sqlite_store(uri)
    return MlflowClient(uri)


def connect(logger_cfg: Any, root: Path) -> tuple[Any, str, str]:
    """(client, experiment id, URI) of the configured store, checked to be reachable."""
    uri = tracking_uri(logger_cfg.tracking_uri, root)
    check_reachable(uri)
    client = store_client(uri)
    return client, experiment_id(client, logger_cfg.experiment_name, uri), uri


def root_cause(exc: BaseException) -> str:
    """The first line of the innermost exception behind `exc`: the database's own short reason
    (`attempt to write a readonly database`), not the layers' text wrapped around it."""
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


@contextmanager
def open_run(
    logger_cfg: Any,
    *,
    name: str,
    root: Path,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    group: str | None = None,
    parent: str | None = None,
    run_id: str | None = None,
) -> Iterator[Run]:
    """Open (or, with `run_id`, re-open) an MLflow run named `name`: params logged flattened, the
    tags of `logger_cfg` and `tags` set, nested under `parent` or else under the parent run of
    `group`. It ends FINISHED, or FAILED on an exception; the parent run of `group` then ends
    with it (`span_group`). With `logger.name: none`, a no-op run."""
    if logger_cfg.name == "none":
        yield Run()
        return
    try:
        client, experiment, uri = connect(logger_cfg, root)
        run_id, group_parent = start_run(client, experiment, name, params, {**logger_cfg.tags, **(tags or {})}, group, parent, run_id)
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001 - a read-only, locked or broken store: one line naming it
        where = tracking_uri(logger_cfg.tracking_uri, root)
        raise TrackingError(f"MLflow store {where}: cannot record runs ({root_cause(exc)}); make it writable, end the process that locks it, or set logger.tracking_uri") from exc
    try:
        yield Run(client, run_id, experiment, uri)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        span_group(client, group_parent)
        raise
    client.set_terminated(run_id, status="FINISHED")
    span_group(client, group_parent)


def span_group(client: Any, group_parent: str | None) -> None:
    """End the parent run of a group now: it starts with its group's first run (it is created
    then) and ends with the last one, so its duration is the wall time of the group's runs (a
    `dvc repro`'s stages, one after another)."""
    if group_parent:
        client.set_terminated(group_parent, status="FINISHED", end_time=int(time.time() * 1000))


def start_run(client: Any, experiment: str, name: str, params: Mapping[str, Any] | None, all_tags: dict[str, str], group: str | None, parent: str | None, run_id: str | None) -> tuple[str, str | None]:
    """Create the run (or mark `run_id` running again) with its params and tags; its id, and
    the id of its group's parent run when it is nested under one."""
    from mlflow.entities import Param, RunTag

    commit = git_commit()
    if commit:
        all_tags["mlflow.source.git.commit"] = commit
    group_parent = group_parent_run(client, experiment, group) if group and not parent else None
    if group:
        all_tags[GROUP_TAG] = group
        parent = parent or group_parent
    if parent:
        all_tags[PARENT_TAG] = parent
    if run_id is None:
        run_id = client.create_run(experiment, run_name=name, tags=all_tags).info.run_id
        client.log_batch(run_id, params=[Param(k, v) for k, v in flatten(params or {}).items()])
    else:
        client.update_run(run_id, status="RUNNING")
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in all_tags.items()])
    return run_id, group_parent


def attach_lightning_logger(run: Run) -> Any:
    """A Lightning `MLFlowLogger` that logs into the open `run` (False when tracking is off).
    Metrics are queued; ending the run flushes them. The queue's thread drains a buffer once a
    second (MLflow's `MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS`): without it, each run's end waits
    out the thread's 1 s poll of an empty queue (about 1 s per training: benchmarks/run_end.py)."""
    if not run.client:
        return False
    from lightning.pytorch.loggers import MLFlowLogger

    os.environ.setdefault("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", "1")

    return MLFlowLogger(tracking_uri=run.uri, run_id=run.run_id, synchronous=False)
