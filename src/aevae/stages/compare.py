"""The compare stage: chosen params against chosen metrics of MLflow runs as a sorted table
(Markdown, CSV), and one metric against one param as a plot with a line per value of another.

The steps are separate functions: `search_runs` (store -> runs), `runs_frame` (runs ->
DataFrame, pure), `sort_runs` (pure), `plots.plot_metric` (DataFrame -> figure); `run` wires them.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from omegaconf import MISSING

from aevae.config import LoggerConfig, Tracker, validate
from aevae.errors import ConfigError, TrackingError, require
from aevae.io import write_atomic
from aevae.records import tracking
from aevae.reporting.plots import plot_metric, save_png
from aevae.workspace import project_root

RUN_COLUMNS = ["run_name", "run_id"]
PAGE_SIZE = 1000


@dataclass
class ComparePlotConfig:
    x: str = MISSING  # a param on the x axis (a swept key, e.g. model.latent_dim)
    y: str = MISSING  # a metric on the y axis
    line: str = MISSING  # a param: one line per value (e.g. model.name)


@dataclass
class CompareConfig:
    logger: LoggerConfig = MISSING  # the store and experiment; logger.group: only that sweep's runs
    filter: Optional[str] = MISSING  # an MLflow search filter, e.g. "params.`model.name` = 'vae'"
    finished_only: bool = MISSING  # leave out running, failed and killed runs
    params: list[str] = MISSING  # table columns: flattened config keys
    metrics: list[str] = MISSING  # table columns: metric names
    sort_by: str = MISSING  # one of `metrics`
    ascending: bool = MISSING
    plot: Optional[ComparePlotConfig] = MISSING  # null: no plot
    output_dir: str = MISSING

    def __post_init__(self) -> None:
        require(self.logger.name == Tracker.mlflow, "logger.name", "compare reads runs from MLflow; use logger=mlflow")
        require(len(self.metrics) > 0, "metrics", "name at least one metric")
        require(self.sort_by in self.metrics, "sort_by", f"must be one of metrics ({', '.join(self.metrics)}), got {self.sort_by!r}")
        if self.plot is not None:
            for key, allowed in (("x", self.params), ("line", self.params), ("y", self.metrics)):
                value = getattr(self.plot, key)
                kind = "metrics" if key == "y" else "params"
                require(value in allowed, f"plot.{key}", f"must be one of {kind} ({', '.join(allowed)}), got {value!r}")


@dataclass
class Comparison:
    """What `compare` wrote, and where to look in the MLflow UI."""

    table: pd.DataFrame
    paths: list[Path]
    runs_url: str | None  # the classic runs table of an HTTP tracking server


def search_filter(group: str | None, extra: str | None, finished_only: bool) -> str:
    """An MLflow filter string (MLflow joins clauses with `and` only): the runs of `group`,
    finished ones only, and the user's own filter."""
    clauses = []
    if group:
        clauses.append(f"tags.`{tracking.GROUP_TAG}` = '{group}'")
    if finished_only:
        clauses.append("attributes.status = 'FINISHED'")
    if extra:
        clauses.append(extra)
    return " and ".join(clauses)


def search_runs(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    """Every run of the experiment that matches `filter_string` (all result pages)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=PAGE_SIZE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _numeric_if_possible(column: pd.Series) -> pd.Series:
    """Params are strings in MLflow; turn a column of numbers back into numbers."""
    numbers = pd.to_numeric(column, errors="coerce")
    return numbers if numbers.notna().sum() == column.notna().sum() else column


def runs_frame(runs: list[Any], params: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per run (group parent runs left out): run name and id, then params, then metrics
    (the last logged value; missing ones are NaN)."""
    rows = [
        {
            "run_name": run.info.run_name,
            "run_id": run.info.run_id,
            **{name: run.data.params.get(name) for name in params},
            **{name: run.data.metrics.get(name, float("nan")) for name in metrics},
        }
        for run in runs
        if run.data.tags.get(tracking.ROLE_TAG) != "parent"
    ]
    frame = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *params, *metrics])
    for name in params:
        frame[name] = _numeric_if_possible(frame[name])
    return frame.astype({name: float for name in metrics})


def sort_runs(frame: pd.DataFrame, by: str, ascending: bool) -> pd.DataFrame:
    """Runs sorted by one metric, runs without it last."""
    return frame.sort_values(by, ascending=ascending, na_position="last", kind="stable").reset_index(drop=True)


def runs_url(uri: str, experiment_id: str) -> str | None:
    """The classic runs table of an experiment on an HTTP tracking server (MLflow 3 opens an
    experiment on its GenAI overview; the training runs are under `#/experiments/<id>/runs`)."""
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs"


def run(cfg: CompareConfig) -> Comparison:
    """Read the runs that `cfg` selects from MLflow; write `runs.md`, `runs.csv` and, with a
    `plot` config, `<y>_vs_<x>.png` (`/` as `_`) under `cfg.output_dir`; print the table, the
    files and, for an HTTP store, the runs URL."""
    from mlflow.exceptions import MlflowException

    cfg = validate(cfg)
    uri = tracking.tracking_uri(cfg.logger.tracking_uri, project_root())
    tracking.check_reachable(uri)
    client = tracking.store_client(uri)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    if experiment is None:
        raise TrackingError(f"logger.experiment_name: no experiment {cfg.logger.experiment_name!r} in {uri}")
    filter_string = search_filter(cfg.logger.group, cfg.filter, cfg.finished_only)
    try:
        runs = search_runs(client, experiment.experiment_id, filter_string)
    except MlflowException as exc:
        raise ConfigError(f"filter: MLflow rejected {filter_string!r}: {exc.message}") from exc
    table = sort_runs(runs_frame(runs, list(cfg.params), list(cfg.metrics)), cfg.sort_by, cfg.ascending)
    if table.empty:
        raise ConfigError(f"logger.group / filter: no runs of {cfg.logger.experiment_name!r} match {filter_string!r}")

    output_dir = Path(cfg.output_dir)
    markdown = table.to_markdown(index=False, floatfmt=".4g") + "\n"
    paths = [
        write_atomic(output_dir / "runs.md", lambda tmp: tmp.write_text(markdown)),
        write_atomic(output_dir / "runs.csv", lambda tmp: table.to_csv(tmp, index=False)),
    ]
    if cfg.plot is not None:
        fig = plot_metric(table, cfg.plot.x, cfg.plot.y, cfg.plot.line, cfg.ascending)
        name = f"{cfg.plot.y}_vs_{cfg.plot.x}".replace("/", "_")
        paths.append(save_png(fig, output_dir / f"{name}.png", dpi=120))
    comparison = Comparison(table, paths, runs_url(uri, experiment.experiment_id))
    print(table.to_string(index=False, max_colwidth=40))
    for path in paths:
        print(f"wrote {path}")
    if comparison.runs_url:
        print(f"MLflow runs table: {comparison.runs_url}")
    return comparison
