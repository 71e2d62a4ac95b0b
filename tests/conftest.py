"""Shared fixtures: config composition, a temporary MLflow store, the vendored MNIST copy.

The session also checks that the tests leave the repository as they found it: any new path
(an `mlruns/`, `outputs/`, `mlflow.db`, ...) reported by `git status` fails the run.
"""

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from aevae.config import register_configs

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
MNIST_ROOT = REPO_ROOT / "data" / "raw" / "mnist"

# Tiny settings shared by the tests that train: a few steps of a small net.
TINY = [
    "trainer=debug",
    "net.hidden_dims=[32]",
    "model.latent_dim=4",
    "data.batch_size=32",
]

register_configs()


# --- the repository stays clean -------------------------------------------------------------

# Paths that tools create as a matter of course; everything else new is left behind by a test.
NOISE = (".venv/", ".pytest_cache/", "__pycache__", ".egg-info")
REPO_STATE = pytest.StashKey[set]()
# every untracked and ignored file; no optional lock, so a concurrent git command is never blocked
GIT_STATUS = ["git", "--no-optional-locks", "status", "--porcelain", "--ignored", "--untracked-files=all"]


def repo_paths() -> set[str] | None:
    """Untracked and ignored files of the repository (None outside a git checkout).

    Changes to tracked files are not compared: they are the work in progress, not test output.
    """
    try:
        out = subprocess.run(
            [*GIT_STATUS, "--", ".", ":(exclude).venv"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    paths = {line[3:] for line in out.splitlines() if line[:2] in ("??", "!!")}
    return {path for path in paths if not any(noise in path for noise in NOISE)}


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # only the controlling process checks
        state = repo_paths()
        if state is not None:
            session.config.stash[REPO_STATE] = state


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(REPO_STATE, None)
    after = repo_paths() if before is not None else None
    if after is None:
        return
    new = sorted(after - before)
    if new:
        shown = "\n".join(f"  {path}" for path in new[:50]) + (f"\n  ... {len(new) - 50} more" if len(new) > 50 else "")
        message = f"the tests left {len(new)} new path(s) in the repository (write to tmp_path instead):\n{shown}"
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line(message, red=True, bold=True)
        else:
            print(message)
        session.exitstatus = 1


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def mnist_root() -> Path:
    """The MNIST IDX gz files vendored in the repository."""
    return MNIST_ROOT


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A fresh SQLite MLflow store (the file is created on first use)."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def make_config(tmp_path: Path, tracking_uri: str) -> Callable[..., DictConfig]:
    """Compose a primary config with overrides; outputs and the MLflow store (its artifacts
    beside it) go to tmp_path."""

    def make(overrides: list[str] = (), config_name: str = "train") -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        with open_dict(cfg):
            cfg.output_dir = str(tmp_path / "out")
            if "logger" in cfg and cfg.logger.tracking_uri is None:
                cfg.logger.tracking_uri = tracking_uri
        return cfg

    return make
