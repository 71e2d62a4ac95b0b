"""The reference report stage: `reports/reference.md` from the reference stage's outputs, and an
MLflow run holding it with every recipe's mean metrics."""

from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from aevae.config import LoggerConfig, validate
from aevae.io import write_atomic
from aevae.reporting.reference_table import load_result, recipe_name, render_reference
from aevae.stages.common import open_stage_run, print_summary

TITLE = "aevae reference results: published MNIST numbers beside ours"


@dataclass
class ReferenceReportConfig:
    recipes: list[str] = MISSING  # the reference stage's output directories, one row each
    output: str = MISSING  # reference.md
    logger: LoggerConfig = MISSING
    stage: str = MISSING


def run(cfg: ReferenceReportConfig) -> dict[str, float]:
    """Write `cfg.output` from the recipes' directories and log it; returns the mean metrics,
    named `<recipe>/<model>/<metric>`."""
    cfg = validate(cfg)
    results = [load_result(directory) for directory in cfg.recipes]
    metrics = {
        f"{result.protocol['recipe']}/{result.protocol['model']}/{name.removesuffix('/mean')}": value
        for result in results
        for name, value in result.metrics.items()
        if name.endswith("/mean")
    }
    text = render_reference(results, TITLE, Path(cfg.output).parent)
    with open_stage_run(cfg, stage=cfg.stage, dataset="mnist") as run:
        output = write_atomic(cfg.output, lambda tmp: tmp.write_text(text))
        run.log_metrics(metrics)
        run.log_artifact(output)
    rows = ", ".join(recipe_name(result.protocol) for result in results)
    print_summary(f"{cfg.stage} done: {rows}", {}, Path(cfg.output), run, where_under_dvc=True)
    return metrics
