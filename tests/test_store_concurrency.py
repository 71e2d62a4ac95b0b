"""Processes that open a SQLite store at the same moment (parallel sweep jobs, queued DVC
experiments started together) all get one complete store and one experiment, whether the store is
missing or exists without the experiment (`make ui` made it, or another experiment's runs)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

PROCESSES = 4
# Each process imports everything first, says it is ready, then waits for the start file, so that
# all of them reach the store within a few milliseconds of each other.
OPEN_RUN = """
import sys, time
from pathlib import Path
import mlflow.store.tracking.sqlalchemy_store
from omegaconf import OmegaConf
from aevae.records.tracking import open_run
uri, start, name = sys.argv[1:]
logger = OmegaConf.create({"name": "mlflow", "tracking_uri": uri, "experiment_name": "aevae", "tags": {}})
Path(start).with_name(name).touch()
while not Path(start).exists():
    time.sleep(0.005)
with open_run(logger, name=name, root=Path.cwd()) as run:
    run.log_metrics({"value": 1.0})
"""


def wait_for(ready: list[Path], processes: list[subprocess.Popen], timeout_s: float = 120) -> None:
    """Wait until every process has made its ready file (or one has ended)."""
    deadline = time.monotonic() + timeout_s
    while not all(path.exists() for path in ready) and time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            return
        time.sleep(0.05)


@pytest.mark.parametrize("store_exists", [False, True], ids=["missing store", "store without the experiment"])
def test_processes_opening_one_store_at_once_share_it(tmp_path: Path, store_exists: bool):
    store = tmp_path / "store"
    store.mkdir()
    uri, start = f"sqlite:///{store / 'mlflow.db'}", tmp_path / "start"
    if store_exists:
        MlflowClient(uri).search_experiments()  # creates the schema, as `mlflow ui` does
    processes = [
        subprocess.Popen([sys.executable, "-c", OPEN_RUN, uri, str(start), f"job{i}"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        for i in range(PROCESSES)
    ]
    wait_for([tmp_path / f"job{i}" for i in range(PROCESSES)], processes)
    start.touch()
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * PROCESSES, "\n".join(e[-2000:] for e in errors)

    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "aevae"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == [f"job{i}" for i in range(PROCESSES)]
    assert all(run.info.status == "FINISHED" and run.data.metrics == {"value": 1.0} for run in runs)
    assert [path.name for path in store.iterdir()] == ["mlflow.db"]  # no draft left behind
