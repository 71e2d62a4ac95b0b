"""Evaluate trained checkpoints: `python pipelines/evaluate.py models.ae=<ckpt> models.vae=<ckpt>`."""

import hydra
from omegaconf import DictConfig

from aevae.config import register_configs
from aevae.entry import run_reporting_errors
from aevae.evaluation.evaluate import evaluate

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(evaluate, cfg)


if __name__ == "__main__":
    main()
