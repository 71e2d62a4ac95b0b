"""Hydra's submitit launcher: a real sweep through `hydra/launcher=local` (each job its own submitit
process, as on a SLURM cluster) into a temporary MLflow store; the SLURM launcher checked against
the plugin's schema."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from aevae.records.tracking import GROUP_TAG, ROLE_TAG
from conftest import CONF_DIR, REPO_ROOT, TINY

SWEEP_TIMEOUT_S = 300


def test_local_submitit_sweep_runs_each_job_in_its_own_process_under_one_parent(tmp_path):
    sweep_dir, uri = tmp_path / "sweep", f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("AEVAE_RUN_GROUP", "MLFLOW_TRACKING_URI")}
    result = subprocess.run(
        [sys.executable, "pipelines/train.py", "-m", "hydra/launcher=local", "model=ae,vae", *TINY,
         f"hydra.sweep.dir={sweep_dir}", f"logger.tracking_uri={uri}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=SWEEP_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("aevae").experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get(ROLE_TAG) == "parent"]
    jobs = [run for run in runs if run is not parent]
    assert parent.data.tags[GROUP_TAG] == str(sweep_dir)
    assert sorted(run.data.params["model.name"] for run in jobs) == ["ae", "vae"]
    job_ids = set()
    for run in jobs:
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        output_dir = Path(run.data.params["output_dir"])
        assert output_dir.parent == sweep_dir
        assert run.data.metrics["val/loss"] == pytest.approx(json.loads((output_dir / "metrics.json").read_text())["val/loss"])
        job_id = yaml.safe_load((output_dir / ".hydra/hydra.yaml").read_text())["hydra"]["job"]["id"]
        assert (sweep_dir / ".submitit" / job_id / f"{job_id}_0_result.pkl").is_file()  # submitit ran and returned it
        job_ids.add(job_id)
    assert len(job_ids) == 2


def test_slurm_launcher_composes_against_the_plugin_schema(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path}"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == ("gpu", 1, 1, 1)
    assert launcher.timeout_min > 0 and launcher.cpus_per_task > 0 and launcher.max_num_timeout == 0
    assert launcher.submitit_folder == f"{tmp_path}/.submitit/%j"
