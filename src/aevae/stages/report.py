"""The report stage: the study's metric files and figures as one Markdown and one
self-contained HTML report, logged to MLflow."""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING

from aevae.config import LoggerConfig, validate
from aevae.errors import DataError
from aevae.io import write_atomic, write_json
from aevae.reporting import report
from aevae.reporting.plots import save_loss_curves, save_roc_curves
from aevae.stages.common import open_stage_run, print_summary

MODEL = "{model}"  # stands for each model's name in a configured path or label
ONE_CLASS_MODEL = "{one_class_model}"  # stands for each model with one-class runs
Names = dict[str, Sequence[str]]  # placeholder -> the names it stands for


@dataclass
class MetricsFile:
    path: str = MISSING
    label: str = ""  # prefixed to the metric names of the file (e.g. the model it belongs to)


@dataclass
class ReportSection:
    title: str = MISSING
    text: Optional[str] = None
    files: list[MetricsFile] = field(default_factory=list)
    column_level: int = 0  # which part of the slash-separated metric names becomes the column
    ranking: bool = False  # true: anomaly methods ranked by mean AUROC (report.ranking_table) instead of the pivot
    figures: list[str] = field(default_factory=list)  # glob patterns of images


@dataclass
class SummaryRow:
    use: str = MISSING  # what the row measures, e.g. "reconstruction (test MSE per pixel)"
    metric: str = MISSING  # "{model}" is replaced by each column name
    better: Optional[str] = None  # lower | higher | null (no best marked)
    format: str = ".4g"


@dataclass
class ReportSummary:
    title: str = "Summary"
    text: Optional[str] = None
    files: list[MetricsFile] = field(default_factory=list)  # empty: every section's files
    baselines: list[str] = field(default_factory=list)  # columns after the models
    rows: list[SummaryRow] = MISSING


@dataclass
class ReportConfig:
    summary: Optional[ReportSummary] = MISSING  # the table the report opens with; null: none
    models: list[str] = MISSING  # the model columns, in order; "{model}" in a path stands for each
    one_class_models: list[str] = MISSING  # the models with one-class runs; "{one_class_model}" in a path stands for each
    models_dir: str = MISSING  # where the train stage wrote models/<name>/
    reports_dir: str = MISSING  # where the evaluate, anomaly and probe stages wrote their reports
    roc_curves: str = MISSING  # each model's roc.csv (a path with "{model}")
    roc_figure: str = MISSING  # the ROC figure the report draws from them
    histories: str = MISSING  # each model's history.csv (a path with "{model}")
    training_metrics: list[str] = MISSING  # metrics files of each model's trainings (paths with "{model}"): provisional marks
    dataset_notes: dict[str, str] = MISSING  # data set -> a note shown first (e.g. that the digits variant is a smoke run)
    loss_figure: str = MISSING  # the validation-loss figure the report draws from them
    register: bool = MISSING  # register each model's logged MLflow model as aevae-<dataset>-<model>
    checkpoints: str = MISSING  # each model's best checkpoint (a path with "{model}"): finds the run that logged it
    summary_json: str = MISSING  # the headline numbers (the summary's cells) as one metrics file
    data_card: Optional[str] = MISSING  # the evaluate stage's data_card.json, shown first; null: no card
    title: str = MISSING
    dataset: str = MISSING
    output: str = MISSING
    html: str = MISSING
    sections: list[ReportSection] = MISSING
    logger: LoggerConfig = MISSING
    stage: str = MISSING


def placeholder(pattern: str, names: Names) -> str | None:
    """The placeholder that `pattern` holds, if any."""
    return next((key for key in names if key in pattern), None)


def per_model(pattern: str, names: Names) -> dict[str, Path]:
    """`pattern` with its placeholder replaced by each name it stands for; a missing file is named."""
    key = placeholder(pattern, names)
    paths = {name: Path(pattern.replace(key, name)) for name in names[key]} if key else {}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise DataError(f"{', '.join(missing)}: not found (run the stages that write them: dvc repro)")
    return paths


def levelled_off(metrics: dict[str, Any]) -> bool:
    """Whether every training that a metrics file reports on had levelled off: its own
    `val/levelled_off`, and the share of its one-class models that did (`.../levelled_off/mean`)."""
    return all(value >= 1.0 for key, value in metrics.items() if key == "val/levelled_off" or key.endswith("/levelled_off/mean"))


def expand_files(files: Sequence[MetricsFile], names: Names) -> list[MetricsFile]:
    """A metrics file whose path holds a placeholder becomes one file per name, in order."""
    expanded = []
    for file in files:
        key = placeholder(file.path, names)
        if key is None:
            expanded.append(file)
            continue
        expanded += [replace(file, path=file.path.replace(key, name), label=file.label.replace(key, name)) for name in names[key]]
    return expanded


def data_card_section(card_path: str | None, report_path: str) -> str:
    """The report's data card from the evaluate stage's `data_card.json` ("" when not configured)."""
    if card_path is None:
        return ""
    if not Path(card_path).is_file():
        raise DataError(f"{card_path}: data card not found (run the evaluate stage that writes it: dvc repro)")
    return report.render_data_card(json.loads(Path(card_path).read_text()), card_path, report_path)


def run(cfg: ReportConfig) -> dict[str, float]:
    """Draw the ROC and validation-loss figures of `cfg.models`; write `cfg.output` (Markdown),
    `cfg.html` (images embedded) and `cfg.summary_json` (the summary's numbers); log them on the
    stage's MLflow run, and the summary's numbers also on the pipeline's parent run. Returns
    those numbers."""
    cfg = validate(cfg)
    data_card = data_card_section(cfg.data_card, cfg.output)  # every input is read before any figure is drawn
    models = list(cfg.models)
    names = {MODEL: models, ONE_CLASS_MODEL: list(cfg.one_class_models)}
    save_roc_curves(per_model(cfg.roc_curves, names), cfg.roc_figure)
    save_loss_curves(per_model(cfg.histories, names), cfg.loss_figure)
    checkpoints = per_model(cfg.checkpoints, names) if cfg.register else {}
    sections = [replace(section, files=expand_files(section.files, names)) for section in cfg.sections]
    trained = [json.loads(path.read_text()) | {"model": name} for pattern in cfg.training_metrics for name, path in per_model(pattern, names).items()]
    provisional = list(dict.fromkeys(metrics["model"] for metrics in trained if not levelled_off(metrics)))
    summary = asdict(cfg.summary) | {"models": models, "provisional": provisional} if cfg.summary else None  # columns: models, then baselines
    note = cfg.dataset_notes.get(cfg.dataset)
    if note and summary:  # e.g. the digits variant: a smoke run, said before any number
        summary["text"] = f"**{note}**\n\n{summary['text'] or ''}"
    markdown_text, html_text = report.render_report(cfg.title, sections, cfg.output, summary, data_card)
    headline = report.summary_metrics(summary, sections) if summary else {}
    with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.dataset) as stage_run:
        for path, text in ((cfg.output, markdown_text), (cfg.html, html_text)):
            write_atomic(path, lambda tmp, text=text: tmp.write_text(text))
            stage_run.log_artifact(path)
        stage_run.log_artifact(write_json(cfg.summary_json, headline))
        stage_run.log_metrics(headline)
        stage_run.parent().log_metrics(headline)  # the pipeline's run: reproductions compare in one table
        if checkpoints:
            from aevae.records.mlflow_model import register_models  # MLflow's model flavour: only to register

            register_models(stage_run, cfg.dataset, checkpoints)
    print_summary(f"{cfg.stage} done", {}, f"{cfg.output}, {cfg.html}", stage_run, where_under_dvc=True)  # the study's last lines
    return headline
