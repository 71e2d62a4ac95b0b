"""Semi-supervised probe of trained models' latents:
`python pipelines/probe.py models.ae=<ckpt> models.vae=<ckpt> labels_per_class=[1,10] repeats=3`."""

import hydra
from omegaconf import DictConfig

from aevae.config import register_configs
from aevae.entry import run_reporting_errors
from aevae.evaluation.probe import run_probe

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="probe")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(run_probe, cfg)


if __name__ == "__main__":
    main()
