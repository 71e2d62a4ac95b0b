"""The report stage: the study's metric files and figures as one Markdown and one
self-contained HTML report, logged to MLflow."""

from pathlib import Path
from typing import Any

from aevae import report
from aevae.config import validate
from aevae.io import write_atomic, write_json
from aevae.plots import save_roc_curves
from aevae.stages.common import open_stage_run, print_summary


def run(cfg: Any) -> dict[str, float]:
    """Draw the ROC figure; write `cfg.output` (Markdown), `cfg.html` (images embedded) and
    `cfg.summary_json` (the summary's numbers); log them on the stage's MLflow run, and the
    summary's numbers also on the pipeline's parent run. Returns those numbers."""
    validate(cfg)
    save_roc_curves({label: Path(path) for label, path in cfg.roc_curves.items()}, cfg.roc_figure)
    markdown_text, html_text = report.render_report(cfg.title, cfg.sections, cfg.output, cfg.summary)
    headline = report.summary_metrics(cfg.summary, cfg.sections) if cfg.summary else {}
    with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.dataset) as stage_run:
        for path, text in ((cfg.output, markdown_text), (cfg.html, html_text)):
            write_atomic(path, lambda tmp, text=text: tmp.write_text(text))
            stage_run.log_artifact(path)
        stage_run.log_artifact(write_json(cfg.summary_json, headline))
        stage_run.log_metrics(headline)
        stage_run.parent().log_metrics(headline)  # the pipeline's run: reproductions compare in one table
    print_summary(f"{cfg.stage} done", {}, f"{cfg.output}, {cfg.html}", stage_run, where_under_dvc=True)  # the study's last lines
    return headline
