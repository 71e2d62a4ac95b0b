"""Write the study report (Markdown + HTML) from the stages' metrics and figures."""

import hydra
from omegaconf import DictConfig, OmegaConf

from aevae import report, tracking
from aevae.config import register_configs
from aevae.entry import run_reporting_errors
from aevae.io import write_atomic

register_configs()


def write_report(cfg: DictConfig) -> None:
    markdown_text = report.render_markdown(cfg.title, cfg.sections, cfg.output)
    html_text = report.render_html(markdown_text, cfg.title)
    write_atomic(cfg.output, lambda tmp: tmp.write_text(markdown_text))
    write_atomic(cfg.html, lambda tmp: tmp.write_text(html_text))
    with tracking.stage_run(cfg.logger, stage=cfg.stage, dataset=cfg.dataset, params=OmegaConf.to_container(cfg, resolve=True)) as run:
        run.log_artifact(cfg.output)
        run.log_artifact(cfg.html)
    print(f"report: {cfg.output} and {cfg.html}")
    if run.client:
        experiment_id = run.client.get_run(run.run_id).info.experiment_id
        print(f"MLflow runs: `make ui`, then http://127.0.0.1:5000/#/experiments/{experiment_id}/runs (the classic runs table)")


@hydra.main(version_base="1.3", config_path="../conf", config_name="report")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(write_report, cfg)


if __name__ == "__main__":
    main()
