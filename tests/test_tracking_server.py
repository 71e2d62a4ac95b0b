"""Training against a real `mlflow server` over HTTP, a clear, fast failure without one, and no
MLflow telemetry from the stages."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from aevae.stages.compare import run as compare
from aevae.errors import TrackingError
from aevae.stages.train import run as train
from conftest import TINY, free_port, mlflow_server


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` with a fresh SQLite store, stopped after the test."""
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path) as url:
        yield url


def test_train_logs_to_a_tracking_server_over_http(make_config, server_url, tmp_path):
    cfg = make_config([*TINY, "model=vae", f"logger.tracking_uri={server_url}"])
    metrics = train(cfg)

    client = MlflowClient(server_url)
    experiment = client.get_experiment_by_name("aevae")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "vae" and run.data.params["model.latent_dim"] == "4"
    assert run.data.metrics["val/loss"] == pytest.approx(metrics["val/loss"])
    downloaded = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path / "download"))
    assert json.loads(Path(downloaded).read_text()) == pytest.approx(metrics)

    comparison = compare(make_config([f"logger.tracking_uri={server_url}", "plot=null"], config_name="compare"))
    assert list(comparison.table["run_id"]) == [run.info.run_id]
    assert comparison.runs_url == f"{server_url}/#/experiments/{experiment.experiment_id}/runs"


@pytest.mark.fast
def test_unreachable_tracking_server_fails_fast_naming_it(make_config):
    uri = f"http://127.0.0.1:{free_port()}"
    cfg = make_config([*TINY, f"logger.tracking_uri={uri}"])
    start = time.monotonic()
    with pytest.raises(TrackingError, match=uri.replace(".", r"\.")):
        train(cfg)
    assert time.monotonic() - start < 5
    assert not (Path(cfg.output_dir) / "checkpoints").exists()  # no work started


@pytest.mark.parametrize(("user_value", "disabled"), [(None, True), ("false", False)])
def test_stages_keep_mlflow_telemetry_off_unless_the_user_turns_it_on(user_value, disabled):
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_DISABLE_TELEMETRY"}
    if user_value is not None:
        env["MLFLOW_DISABLE_TELEMETRY"] = user_value
    code = "import aevae.stages.train, mlflow; from mlflow.environment_variables import MLFLOW_DISABLE_TELEMETRY as v; print(v.get())"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(disabled)
