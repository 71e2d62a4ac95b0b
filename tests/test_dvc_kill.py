"""`kill -9` of `dvc` at any moment of a stage, start-up included: no stage process is left
5 s later, and the next `dvc repro` logs each epoch and step once and ends with the metrics of
an uninterrupted run (a copy of the project with tiny params in a temporary git repository;
the training of a model, and the one-class trainings of the anomaly stage)."""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from mlflow import MlflowClient

from conftest import STUDY_PARAMS, copy_project, run_command, set_params, stage_processes, study_env

KILL_AFTER_S = (0.5, 1, 2, 5)  # after DVC prints `Running stage '<stage>'`
GONE_WITHIN_S = 5
RERUN = ["dvc", "repro", "--force", "--single-item"]  # the stage alone, run: not restored from what DVC has cached


class Stage(NamedTuple):
    name: str
    entry_point: str
    metrics: str  # the stage's metrics file
    outputs: tuple[str, ...]  # removed after the uninterrupted run, so that the stage runs again in full
    runs: str  # the names of its training runs in MLflow (a regular expression)


STAGES = [
    Stage("train@vae", "pipelines/train.py", "models/vae/metrics.json", ("models/vae/checkpoints", "models/vae/metrics.json"), r"train/vae"),
    Stage("anomaly@vae", "pipelines/anomaly.py", "reports/anomaly/vae/metrics.json", ("reports/anomaly/vae/metrics.json", "outputs/dvc/anomaly/vae"), r"anomaly/vae/class_\d+"),
]


def kill_dvc_after(repo: Path, env: dict[str, str], stage: Stage, seconds: float) -> None:
    """Start `dvc repro` of `stage`, `kill -9` dvc alone `seconds` after it starts the stage."""
    log = repo.parent / f"dvc-{seconds}.log"
    with log.open("w") as out:
        dvc = subprocess.Popen([*RERUN, stage.name], cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while f"Running stage '{stage.name}'" not in log.read_text():
        assert dvc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.02)
    time.sleep(seconds)
    assert dvc.poll() is None, f"the stage ended within {seconds} s: nothing to kill"
    os.kill(dvc.pid, signal.SIGKILL)  # dvc alone: its shell and stage are left to notice
    dvc.wait()
    killed_at = time.monotonic()
    while stage_processes(repo, stage.entry_point) and time.monotonic() < killed_at + GONE_WITHIN_S:
        time.sleep(0.1)
    assert not stage_processes(repo, stage.entry_point), f"a stage outlived the dvc killed {seconds} s into it by {GONE_WITHIN_S} s"


def steps_by_metric(client: MlflowClient, run_id: str) -> dict[str, list[int]]:
    return {name: sorted(point.step for point in client.get_metric_history(run_id, name)) for name in client.get_run(run_id).data.metrics}


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES, ids=[stage.name for stage in STAGES])
def test_killing_dvc_at_any_moment_of_a_stage_ends_it_and_the_rerun_is_whole(tmp_path, stage):
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_project(repo)
    set_params(repo / "params.yaml", {**STUDY_PARAMS, "models.vae.max_epochs": 3})
    env = study_env()
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "study"]):
        run_command(args, repo, env)
    run_command(["dvc", "repro", stage.name], repo, env)  # uninterrupted
    uninterrupted = (repo / stage.metrics).read_bytes()
    for output in stage.outputs:
        if (repo / output).is_dir():
            shutil.rmtree(repo / output)
        else:
            (repo / output).unlink()

    for seconds in KILL_AFTER_S:
        kill_dvc_after(repo, env, stage, seconds)
    run_command([*RERUN, stage.name], repo, env)

    assert (repo / stage.metrics).read_bytes() == uninterrupted
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("aevae").experiment_id], order_by=["attributes.start_time ASC"])
    names = sorted({run.info.run_name for run in runs if re.fullmatch(stage.runs, run.info.run_name)})
    assert names, [run.info.run_name for run in runs]
    for name in names:  # the uninterrupted run's training and the last one's
        first, *_, last = [run for run in runs if run.info.run_name == name]
        assert first.info.status == last.info.status == "FINISHED"
        expected, got = steps_by_metric(client, first.info.run_id), steps_by_metric(client, last.info.run_id)
        # each step once (`epoch`: Lightning logs it beside both an epoch's validation and its training metrics)
        assert all(len(steps) == len(set(steps)) for metric, steps in expected.items() if metric != "epoch"), expected
        assert got == expected, name  # every metric at every step of the uninterrupted run, once
