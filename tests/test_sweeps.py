"""Hydra sweeps as real subprocesses (joblib launcher, Optuna sweeper) into a real MLflow SQLite
store, and the compare command over the runs they leave."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from aevae.stages.compare import run as compare, runs_frame, search_filter, search_runs, sort_runs
from aevae.errors import ConfigError
from aevae.records.tracking import GROUP_TAG, ROLE_TAG
from conftest import REPO_ROOT, TINY

SWEEP_TIMEOUT_S = 300
TINY_SWEPT = [o for o in TINY if not o.startswith("model.latent_dim=")]  # a fixed override would pin it


def run_pipeline(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run `pipelines/<script>` with the repository's Python; fail the test with its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("AEVAE_RUN_GROUP", "MLFLOW_TRACKING_URI")}
    result = subprocess.run(
        [sys.executable, f"pipelines/{script}", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=SWEEP_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def sweep_runs(uri: str) -> tuple[list, list]:
    """(parent runs, job runs) of the `aevae` experiment."""
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("aevae").experiment_id])
    parents = [run for run in runs if run.data.tags.get(ROLE_TAG) == "parent"]
    return parents, [run for run in runs if run not in parents]


@pytest.fixture(scope="module")
def joblib_sweep(tmp_path_factory) -> tuple[Path, str]:
    """A 2 x 2 sweep (model x latent_dim), two jobs at a time, into a fresh SQLite store."""
    sweep_dir = tmp_path_factory.mktemp("sweep") / "ae_vs_vae"  # created by the sweep itself
    uri = f"sqlite:///{sweep_dir / 'mlflow.db'}"
    run_pipeline(
        "train.py", "-m", "model=ae,vae", "model.latent_dim=2,8", *TINY_SWEPT,
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}", f"logger.tracking_uri={uri}",
    )
    return sweep_dir, uri


def test_joblib_sweep_logs_every_job_under_one_parent_run(joblib_sweep):
    sweep_dir, uri = joblib_sweep
    parents, jobs = sweep_runs(uri)

    assert len(parents) == 1, "concurrent jobs must share one parent run"
    (parent,) = parents
    assert parent.data.tags[GROUP_TAG] == str(sweep_dir)
    assert all(run.info.status == "FINISHED" for run in jobs)
    assert sorted((run.data.params["model.name"], run.data.params["model.latent_dim"]) for run in jobs) == [
        ("ae", "2"), ("ae", "8"), ("vae", "2"), ("vae", "8")
    ]
    for run in jobs:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags[GROUP_TAG] == str(sweep_dir)
        overrides = f"model.latent_dim={run.data.params['model.latent_dim']}", f"model={run.data.params['model.name']}"
        assert run.info.run_name.split(",")[:2] == list(reversed(overrides)), run.info.run_name  # command-line order
        assert "tracking_uri" not in run.info.run_name  # paths are left out of the run name
        # every job wrote its own directory, and MLflow holds the metrics it wrote there
        job_metrics = json.loads((Path(run.data.params["output_dir"]) / "metrics.json").read_text())
        assert Path(run.data.params["output_dir"]).parent == sweep_dir
        assert run.data.metrics["val/loss"] == pytest.approx(job_metrics["val/loss"])
        assert ("val/kl" in run.data.metrics) == (run.data.params["model.name"] == "vae")
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name != "mlartifacts") == ["0", "1", "2", "3"]


def test_compare_command_tables_the_sweep(joblib_sweep, tmp_path):
    sweep_dir, uri = joblib_sweep
    out = tmp_path / "compare"
    result = run_pipeline(
        "compare.py", f"logger.tracking_uri={uri}", f"logger.group={sweep_dir}", f"hydra.run.dir={out}",
        "params=[model.name,model.latent_dim]", "metrics=[val/loss,val/mse]",
    )

    table = pd.read_csv(out / "runs.csv")
    _, jobs = sweep_runs(uri)
    assert len(table) == len(jobs) == 4
    assert set(table["run_id"]) == {run.info.run_id for run in jobs}
    assert list(table["val/loss"]) == sorted(table["val/loss"])
    assert list(table.columns) == ["run_name", "run_id", "model.name", "model.latent_dim", "val/loss", "val/mse"]
    markdown_rows = (out / "runs.md").read_text().splitlines()
    assert len(markdown_rows) == 2 + 4  # header, separator, one row per run
    assert (out / "val_mse_vs_model.latent_dim.png").stat().st_size > 0
    assert "MLflow runs table" not in result.stdout  # only for HTTP stores


def test_optuna_search_records_its_best_trial(tmp_path):
    sweep_dir = tmp_path / "search"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_pipeline(
        "train.py", "-m", "hparams_search=vae_optuna", "hydra.sweeper.n_trials=3", *TINY_SWEPT,
        f"hydra.sweep.dir={sweep_dir}", f"logger.tracking_uri={uri}",
    )

    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert set(results.best_params) == {"model.lr", "model.latent_dim", "model.beta"}
    (parent,), trials = sweep_runs(uri)
    assert len(trials) == 3 and all(run.info.status == "FINISHED" for run in trials)
    assert all(run.data.params["model.name"] == "vae" for run in trials)
    # direction maximize on val/elbo: the best value is the highest ELBO of the trials
    assert results.best_value == pytest.approx(max(run.data.metrics["val/elbo"] for run in trials))
    assert parent.data.metrics["best/value"] == pytest.approx(results.best_value)
    assert {k: float(v) for k, v in parent.data.params.items()} == {f"best.{k}": float(v) for k, v in results.best_params.items()}
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(parent.info.run_id)}
    assert "optimization_results.yaml" in artifacts


def test_compare_selects_a_group_and_finished_runs(make_config, tracking_uri, tmp_path):
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("aevae")

    def add_run(group: str, latent_dim: int, loss: float | None, status: str = "FINISHED", role: str | None = None) -> str:
        tags = {GROUP_TAG: group, **({ROLE_TAG: role} if role else {})}
        run = client.create_run(experiment_id, run_name=f"{group}-{latent_dim}", tags=tags)
        client.log_param(run.info.run_id, "model.latent_dim", latent_dim)
        if loss is not None:
            client.log_metric(run.info.run_id, "val/loss", loss)
        client.set_terminated(run.info.run_id, status=status)
        return run.info.run_id

    add_run("a", 0, None, role="parent")
    best, worst, unlogged = add_run("a", 8, 1.0), add_run("a", 2, 3.0), add_run("a", 4, None)
    add_run("a", 16, 0.5, status="FAILED")
    add_run("b", 8, 0.1)

    runs = search_runs(client, experiment_id, search_filter("a", None, finished_only=True))
    table = sort_runs(runs_frame(runs, ["model.latent_dim"], ["val/loss"]), "val/loss", ascending=True)
    assert list(table["run_id"]) == [best, worst, unlogged]  # no parent, no failed run, no group b
    assert list(table["model.latent_dim"]) == [8, 2, 4]  # params come back as numbers
    assert math.isnan(table["val/loss"].iloc[-1])

    narrowed = search_filter("a", "params.model.latent_dim = '2'", finished_only=True)
    assert [run.info.run_id for run in search_runs(client, experiment_id, narrowed)] == [worst]

    cfg = make_config(["filter='params.model.latent_dim >>> 2'"], config_name="compare")
    with pytest.raises(ConfigError, match="^filter: "):
        compare(cfg)
