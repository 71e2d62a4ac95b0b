"""Hydra multirun support: config resolvers that name a sweep's runs, and a callback that prepares
the MLflow store before the jobs start and records a hyper-parameter search's best trial after.

`aevae.sweep_group` resolves to the sweep directory in a multirun (null otherwise), so every job
of one sweep nests under one MLflow parent run; `aevae.sweep_job` resolves to the job's overrides
in the order the command line gave them (`model=ae,model.latent_dim=2`; paths and store keys
left out), a readable run name. Both are null outside Hydra (the
compose API), so library calls in tests are unaffected.
"""

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

OPTIMIZATION_RESULTS = "optimization_results.yaml"  # written into the sweep dir by the Optuna sweeper


def _multirun_hydra() -> DictConfig | None:
    """The current job's `hydra` node when it is a multirun job, else None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return hydra_cfg if hydra_cfg.mode == RunMode.MULTIRUN else None


def sweep_group() -> str | None:
    """Resolver `aevae.sweep_group`: the sweep directory of a multirun job, else None."""
    hydra_cfg = _multirun_hydra()
    return str(hydra_cfg.sweep.dir) if hydra_cfg else None


def sweep_job() -> str | None:
    """Resolver `aevae.sweep_job`: the override string of a multirun job, else None."""
    hydra_cfg = _multirun_hydra()
    if hydra_cfg is None:
        return None
    excluded = set(hydra_cfg.job.config.override_dirname.exclude_keys)
    kept = [item for item in hydra_cfg.overrides.task if item.split("=", 1)[0].lstrip("+~") not in excluded]
    return ",".join(kept) or None


def register_resolvers() -> None:
    """Register the `aevae.*` resolvers (idempotent)."""
    OmegaConf.register_new_resolver("aevae.sweep_group", sweep_group, replace=True)
    OmegaConf.register_new_resolver("aevae.sweep_job", sweep_job, replace=True)


def _parent_run(logger_cfg: Any) -> tuple[Any, str]:
    """The MLflow client and the parent run of the sweep's group, both created if needed."""
    from aevae.records import tracking
    from aevae.workspace import project_root

    client, experiment_id, _ = tracking.connect(logger_cfg, project_root())
    return client, tracking.group_parent_run(client, experiment_id, logger_cfg.group)


def _log_best_trial(client: Any, run_id: str, results_path: Path) -> None:
    """Log an Optuna sweep's best params (`best.<key>`), best value and results file on `run_id`."""
    from mlflow.entities import Metric, Param

    results = OmegaConf.load(results_path)
    params = [Param(f"best.{key}", str(value)) for key, value in results.best_params.items()]
    metrics = [Metric("best/value", float(results.best_value), 0, 0)] if "best_value" in results else []
    client.log_batch(run_id, metrics=metrics, params=params)
    client.log_artifact(run_id, str(results_path))


class SweepTracking(Callback):
    """Hydra callback for `train.py -m`: one MLflow parent run per sweep, best trial recorded.

    Before any job starts, the master process opens the store (so parallel jobs never race to
    create a fresh SQLite schema) and creates the group's parent run. After the sweep, the
    Optuna sweeper's best params are logged on that parent run.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if self._logger(config) is not None:
            Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)  # it may hold the store
            _parent_run(config.logger)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        results_path = Path(config.hydra.sweep.dir) / OPTIMIZATION_RESULTS
        if self._logger(config) is None or not results_path.exists():
            return
        client, run_id = _parent_run(config.logger)
        _log_best_trial(client, run_id, results_path)
        log.info("best trial of %s logged on MLflow run %s", config.logger.group, run_id)

    @staticmethod
    def _logger(config: DictConfig) -> DictConfig | None:
        """The logger node when the sweep logs to MLflow under a group, else None.

        The master process of a multirun has no HydraConfig (each job sets its own); set it so
        that `logger.group` resolves here as it does in the jobs.
        """
        HydraConfig.instance().set_config(config)
        logger_cfg = config.logger
        return logger_cfg if logger_cfg.name == "mlflow" and logger_cfg.group else None
