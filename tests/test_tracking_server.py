"""Training against a real `mlflow server` over HTTP, and a clear, fast failure without one."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from aevae.stages.compare import run as compare
from aevae.errors import TrackingError
from aevae.stages.train import run as train
from conftest import TINY

SERVER_START_TIMEOUT_S = 90
SERVER_STOP_TIMEOUT_S = 5


def free_port() -> int:
    """A loopback port that nothing listens on (the OS picks it, the socket releases it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} not healthy after {timeout_s}s")


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on a free loopback port, stopped after the test.

    The server runs in its own process group (the CLI, its uvicorn worker, its job runner), and
    the whole group is stopped: SIGTERM, then SIGKILL if uvicorn still waits on open connections.
    """
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "mlartifacts"),
    ]
    log = tmp_path / "server.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, log, SERVER_START_TIMEOUT_S)
        yield url
    finally:
        stop_process_group(server)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group led by `process`, SIGKILL it if the leader has not exited in time."""
    with contextlib.suppress(ProcessLookupError):  # the whole group may be gone already
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_train_logs_to_a_tracking_server_over_http(make_config, mlflow_server, tmp_path):
    cfg = make_config([*TINY, "model=vae", f"logger.tracking_uri={mlflow_server}"])
    metrics = train(cfg)

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("aevae")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "vae" and run.data.params["model.latent_dim"] == "4"
    assert run.data.metrics["val/loss"] == pytest.approx(metrics["val/loss"])
    downloaded = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path / "download"))
    assert json.loads(Path(downloaded).read_text()) == pytest.approx(metrics)

    comparison = compare(make_config([f"logger.tracking_uri={mlflow_server}", "plot=null"], config_name="compare"))
    assert list(comparison.table["run_id"]) == [run.info.run_id]
    assert comparison.runs_url == f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs"


def test_unreachable_tracking_server_fails_fast_naming_it(make_config):
    uri = f"http://127.0.0.1:{free_port()}"
    cfg = make_config([*TINY, f"logger.tracking_uri={uri}"])
    start = time.monotonic()
    with pytest.raises(TrackingError, match=uri.replace(".", r"\.")):
        train(cfg)
    assert time.monotonic() - start < 5
    assert not (Path(cfg.output_dir) / "checkpoints").exists()  # no work started
