"""Shared fixtures: config composition, a temporary MLflow store, the local MNIST copy."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from aevae.config import register_configs

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
MNIST_ROOT = Path(os.environ.get("AEVAE_MNIST_ROOT", REPO_ROOT.parent / "shared" / "datasets" / "mnist"))

# Tiny settings shared by the tests that train: a few steps of a small net.
TINY = [
    "trainer=debug",
    "net.hidden_dims=[32]",
    "model.latent_dim=4",
    "data.batch_size=32",
]

register_configs()


@pytest.fixture
def mnist_root() -> Path:
    if not (MNIST_ROOT / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST files not found in {MNIST_ROOT} (set AEVAE_MNIST_ROOT)")
    return MNIST_ROOT


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A fresh SQLite MLflow store."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def make_config(tmp_path: Path, tracking_uri: str) -> Callable[..., DictConfig]:
    """Compose a primary config with overrides; outputs and the MLflow store go to tmp_path."""

    def make(overrides: list[str] = (), config_name: str = "train") -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        with open_dict(cfg):
            cfg.output_dir = str(tmp_path / "out")
            if "logger" in cfg and cfg.logger.tracking_uri is None:
                cfg.logger.tracking_uri = tracking_uri
        return cfg

    return make
