"""Write the prepared split file of a data set: `python pipelines/prepare.py data=digits`."""

import logging

import hydra
from omegaconf import DictConfig

from aevae.config import register_configs, validate_data
from aevae.data import prepare_splits, save_splits
from aevae.entry import run_reporting_errors

register_configs()
log = logging.getLogger(__name__)


def prepare(cfg: DictConfig) -> None:
    validate_data(cfg.data)
    splits = prepare_splits(cfg.data)
    save_splits(splits, cfg.output)
    sizes = ", ".join(f"{name} {len(labels)}" for name, labels in splits.labels.items())
    log.info("%s: %s -> %s", cfg.data.name, sizes, cfg.output)


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(prepare, cfg)


if __name__ == "__main__":
    main()
