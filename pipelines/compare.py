"""Compare MLflow runs: `python pipelines/compare.py logger.group=<sweep dir>` writes runs.md,
runs.csv and a metric-vs-param plot into the output directory."""

import hydra
from omegaconf import DictConfig

from aevae.compare import compare
from aevae.config import register_configs
from aevae.entry import run_reporting_errors

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    """Compare; print the table, the files written and the MLflow runs URL (HTTP stores)."""
    comparison = run_reporting_errors(compare, cfg)
    print(comparison.table.to_string(index=False, max_colwidth=40))
    for path in comparison.paths:
        print(f"wrote {path}")
    if comparison.runs_url:
        print(f"MLflow runs table: {comparison.runs_url}")


if __name__ == "__main__":
    main()
