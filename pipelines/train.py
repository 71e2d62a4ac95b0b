"""Train an AE or VAE: `python pipelines/train.py model=vae net=conv trainer.max_epochs=5`."""

import hydra
from omegaconf import DictConfig

from aevae.config import register_configs
from aevae.entry import run_reporting_errors
from aevae.training import train

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Train; return the objective metric (for Hydra sweepers)."""
    metrics = run_reporting_errors(train, cfg)
    return metrics[cfg.objective]


if __name__ == "__main__":
    main()
