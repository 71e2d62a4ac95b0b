"""What every stage shares: its MLflow run (name, tags, group, parent), params, and the summary
it prints at the end."""

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from aevae.io import plain
from aevae.records import tracking
from aevae.run.ranks import is_rank_zero
from aevae.workspace import project_root

log = logging.getLogger(__name__)

HEADLINE_METRICS = 6  # metrics printed in a stage's closing summary
Config = TypeVar("Config")


def config_part(cfg: Any, schema: type[Config], **changes: Any) -> Config:
    """The fields of dataclass `schema` in typed config `cfg`, with `changes`, as a `schema` of
    their own (the training config of one anomaly class or one reference seed)."""
    return schema(**{field.name: getattr(cfg, field.name) for field in fields(schema)} | changes)


def run_group(logger_cfg: Any) -> str | None:
    """The configured group; under DVC (no group configured), one group per pipeline state:
    `repro-<commit>-<params.yaml hash>`, so a reproduction's stage runs share one parent."""
    if logger_cfg.group or not os.environ.get("DVC_STAGE"):
        return logger_cfg.group
    return tracking.repro_group(Path("params.yaml"))  # DVC runs a stage in its experiment's workspace (DVC_ROOT: the parent repo)


def run_name(logger_cfg: Any, stage: str, label: str | None = None) -> str:
    """`logger.run_name` if set, else `<stage>/<label>` (`train/vae`, `anomaly/ae/class_3`)."""
    return logger_cfg.run_name or "/".join(part for part in (stage, label) if part)


@contextmanager
def open_stage_run(
    cfg: Any,
    *,
    stage: str,
    dataset: str,
    label: str | None = None,
    parent: str | None = None,
    run_id: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Iterator[tracking.Run]:
    """The MLflow run of one stage (per model: `label`), nested under `parent` or else under the
    run group; tagged with stage, model, data set and DVC stage; its params the resolved config
    (or `params`). Only rank 0 opens a run."""
    if not is_rank_zero():
        yield tracking.Run()
        return
    tags = {"aevae.stage": stage, "aevae.dataset": dataset}
    if label:
        tags["aevae.model"] = label
    if os.environ.get("DVC_STAGE"):
        tags["aevae.dvc_stage"] = os.environ["DVC_STAGE"]
    with tracking.open_run(
        cfg.logger,
        name=run_name(cfg.logger, stage, label),
        root=project_root(),
        params=params if params is not None else plain(cfg),
        tags=tags,
        group=None if parent else run_group(cfg.logger),
        parent=parent,
        run_id=run_id,
    ) as run:
        yield run


def headline(metrics: Mapping[str, float]) -> str:
    """`name value, ...` of the first metrics by name (training's `best/` and `epochs` last)."""
    names = sorted(metrics, key=lambda name: (name.startswith(("best/", "epochs")), name))[:HEADLINE_METRICS]
    return ", ".join(f"{name} {metrics[name]:.4g}" for name in names)


def where_line(output: str | Path, run: tracking.Run) -> str:
    """`  outputs: <output>; MLflow run <id>, runs table <url>` (no run when tracking is off)."""
    tracked = f"; MLflow run {run.run_id}, runs table {run.runs_url()}" if run.run_id else ""
    return f"  outputs: {output}{tracked}"


def print_summary(title: str, metrics: Mapping[str, float], output: str | Path, run: tracking.Run, *, where_under_dvc: bool = False) -> None:
    """A stage's closing lines: its headline metrics, then its `where_line`; under `dvc repro` the
    first line only (DVC's command line shows the outputs), unless `where_under_dvc`."""
    if not is_rank_zero():
        return
    shown = headline(metrics)
    lines = [f"{title}: {shown}" if shown else title]
    if where_under_dvc or not os.environ.get("DVC_STAGE"):
        lines.append(where_line(output, run))
    print(*lines, sep="\n", flush=True)


def log_summary(title: str, metrics: Mapping[str, float]) -> None:
    """One INFO line for a run nested in a stage (a class of the anomaly stage): progress when
    run by hand; silenced under `dvc repro` (`aevae.run.logs`), where the stage's summary is enough."""
    log.info("%s: %s", title, headline(metrics))
