"""One-class anomaly detection: `python pipelines/anomaly.py model=vae normal_classes=[0,1]`."""

import hydra
from omegaconf import DictConfig

from aevae.config import register_configs
from aevae.entry import run_reporting_errors
from aevae.evaluation.one_class import run_anomaly

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="anomaly")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(run_anomaly, cfg)


if __name__ == "__main__":
    main()
