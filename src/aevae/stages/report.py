"""The report stage: the study's metric files and figures as one Markdown and one
self-contained HTML report, logged to MLflow."""

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from aevae import report
from aevae.config import MetricsFile, ReportConfig, validate
from aevae.errors import DataError
from aevae.io import write_atomic, write_json
from aevae.mlflow_model import register_models
from aevae.plots import save_loss_curves, save_roc_curves
from aevae.stages.common import open_stage_run, print_summary

MODEL = "{model}"  # stands for each model's name in a configured path or label


def per_model(pattern: str, models: Sequence[str]) -> dict[str, Path]:
    """`pattern` with `{model}` replaced by each model's name; a missing file is named."""
    paths = {name: Path(pattern.replace(MODEL, name)) for name in models}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise DataError(f"{', '.join(missing)}: not found (run the stages that write them: dvc repro)")
    return paths


def expand_files(files: Sequence[MetricsFile], models: Sequence[str]) -> list[MetricsFile]:
    """A metrics file whose path holds `{model}` becomes one file per model, in model order."""
    expanded = []
    for file in files:
        if MODEL not in file.path:
            expanded.append(file)
            continue
        expanded += [replace(file, path=file.path.replace(MODEL, name), label=file.label.replace(MODEL, name)) for name in models]
    return expanded


def run(cfg: Any) -> dict[str, float]:
    """Draw the ROC and validation-loss figures of `cfg.models`; write `cfg.output` (Markdown),
    `cfg.html` (images embedded) and `cfg.summary_json` (the summary's numbers); log them on the
    stage's MLflow run, and the summary's numbers also on the pipeline's parent run. Returns
    those numbers."""
    typed: ReportConfig = validate(cfg)
    models = list(typed.models)
    save_roc_curves(per_model(typed.roc_curves, models), typed.roc_figure)
    save_loss_curves(per_model(typed.histories, models), typed.loss_figure)
    checkpoints = per_model(typed.checkpoints, models) if typed.register else {}
    sections = [replace(section, files=expand_files(section.files, models)) for section in typed.sections]
    trained = {name: json.loads(path.read_text()) for name, path in per_model(typed.training_metrics, models).items()}
    provisional = [name for name in models if trained[name].get("val/levelled_off", 1.0) < 1.0]
    summary = asdict(typed.summary) | {"models": models, "provisional": provisional} if typed.summary else None  # columns: models, then baselines
    note = typed.dataset_notes.get(typed.dataset)
    if note and summary:  # e.g. the digits variant: a smoke run, said before any number
        summary["text"] = f"**{note}**\n\n{summary['text'] or ''}"
    markdown_text, html_text = report.render_report(typed.title, sections, typed.output, summary)
    headline = report.summary_metrics(summary, sections) if summary else {}
    with open_stage_run(cfg, stage=typed.stage, dataset=typed.dataset) as stage_run:
        for path, text in ((typed.output, markdown_text), (typed.html, html_text)):
            write_atomic(path, lambda tmp, text=text: tmp.write_text(text))
            stage_run.log_artifact(path)
        stage_run.log_artifact(write_json(typed.summary_json, headline))
        stage_run.log_metrics(headline)
        stage_run.parent().log_metrics(headline)  # the pipeline's run: reproductions compare in one table
        register_models(stage_run, typed.dataset, checkpoints)
    print_summary(f"{typed.stage} done", {}, f"{typed.output}, {typed.html}", stage_run, where_under_dvc=True)  # the study's last lines
    return headline
